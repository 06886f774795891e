"""One tenant cannot stall a node's agent for everyone (issue 15, items 3 and 8).

Before: the per-container lock was taken inside a capture worker, so four captures of one slow
container held all four workers; the analysis ran in the capture worker, so slow analyses
stopped new captures; work was first come, first served; and DELETE of an Analyzing job
answered 409.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.agent.agent_support import (
    Env,
    GatedAnalyzer,
    archive_info,
    request,
    sha256,
    wait_terminal,
)

from forensic_checkpoint.agent.capture.analysis_runner import ProcessAnalyzer
from forensic_checkpoint.agent.capture.service import CaptureService
from forensic_checkpoint.agent.jobs import JobStore
from forensic_checkpoint.analysis.format.file_hash import sha256_file
from forensic_checkpoint.api.agent import ArchiveInfo, CaptureState
from forensic_checkpoint.errors import ConflictError, ForensicCheckpointError, NotFoundError


def until(what: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := what()):
        assert time.monotonic() < deadline, f"still not {what}"
        time.sleep(0.02)
    return value


def states(service: CaptureService, keys: list[str]) -> list[CaptureState]:
    return [service.status(key).state for key in keys]


def test_captures_of_one_slow_container_hold_one_worker(env: Env) -> None:
    env.kubelet.delays = {"slow": 1.0}
    service = env.service(workers=4)
    slow = [f"slow{n}-app" for n in range(4)]
    for key in slow:
        service.submit(request(key, pod="slow"))
    started = time.monotonic()
    service.submit(request("other1-app", pod="other"))
    done = wait_terminal(service, "other1-app", timeout=15)
    elapsed = time.monotonic() - started
    assert done.state is CaptureState.COMPLETED, done
    # Before: the other container waited for the first slow capture (and its analysis).
    assert not any(state.terminal for state in states(service, slow)), states(service, slow)
    assert elapsed < 0.9, elapsed
    # Three slow captures wait for their container, holding no worker; one is in its call.
    until(lambda: service.in_progress() == 1)
    assert service.queue_depth() == 3
    finals = [wait_terminal(service, key) for key in slow]
    assert all(s.state is CaptureState.COMPLETED for s in finals), finals
    assert len(env.kubelet.calls) == 5  # one kubelet call per key
    calls = sorted((start, end) for pod, start, end in env.kubelet.spans if pod == "slow")
    for (_, end), (start, _) in itertools.pairwise(calls):
        assert start - end >= 1.0  # one call per container at a time, a second apart
    until(lambda: (service.queue_depth(), service.in_progress()) == (0, 0))
    print(f"other container's capture beside 4 slow ones: {elapsed:.2f} s")


def test_a_slow_analysis_does_not_delay_a_new_capture(env: Env) -> None:
    analyzer = GatedAnalyzer()
    service = env.service(analyzer=analyzer, workers=2, analysis_workers=1)
    for key, pod in (("a1-app", "a"), ("b1-app", "b")):
        service.submit(request(key, pod=pod))
    until(lambda: states(service, ["a1-app", "b1-app"]) == [CaptureState.ANALYZING] * 2)
    started = time.monotonic()
    service.submit(request("c1-app", pod="c"))
    until(lambda: service.status("c1-app").state is CaptureState.ANALYZING, timeout=5)
    elapsed = time.monotonic() - started
    assert ("default", "c", "app", 30) in env.kubelet.calls
    assert elapsed < 1.0, elapsed
    assert len(analyzer.started) == 1  # one analysis worker: the others wait for it
    until(lambda: (service.queue_depth(), service.in_progress()) == (2, 1))
    analyzer.release.set()
    for key in ("a1-app", "b1-app", "c1-app"):
        assert wait_terminal(service, key).state is CaptureState.COMPLETED
    until(lambda: (service.queue_depth(), service.in_progress()) == (0, 0))


def test_captures_take_turns_across_namespaces(env: Env) -> None:
    env.kubelet.delay = 0.2
    service = env.service(workers=1)
    for n in range(6):
        service.submit(request(f"noisy{n}-app", pod=f"noisy{n}", namespace="noisy"))
    service.submit(request("quiet0-app", pod="quiet0", namespace="quiet"))
    wait_terminal(service, "quiet0-app")
    order = [pod for _, pod, _, _ in env.kubelet.calls]
    # noisy0 was in its call already; then one more noisy capture, then the quiet one's turn.
    assert order.index("quiet0") <= 2, order


def test_analyses_take_turns_across_namespaces(env: Env) -> None:
    analyzer = GatedAnalyzer()
    service = env.service(analyzer=analyzer, workers=4, analysis_workers=1)
    keys = [f"noisy{n}-app" for n in range(4)]
    for n, key in enumerate(keys):
        service.submit(request(key, pod=f"noisy{n}", namespace="noisy"))
    until(lambda: states(service, keys) == [CaptureState.ANALYZING] * 4)
    service.submit(request("quiet0-app", pod="quiet0", namespace="quiet"))
    until(lambda: service.status("quiet0-app").state is CaptureState.ANALYZING)
    analyzer.release.set()
    for key in [*keys, "quiet0-app"]:
        wait_terminal(service, key)
    # One noisy analysis ran when the quiet one came; at most one more noisy goes first.
    assert analyzer.started.index("quiet0-app") <= 2, analyzer.started


def _analysing(env: Env, key: str, **options: Any) -> tuple[CaptureService, GatedAnalyzer]:
    analyzer = GatedAnalyzer()
    service = env.service(analyzer=analyzer, **options)
    service.submit(request(key))
    until(lambda: key in analyzer.holding)
    until(lambda: service.status(key).archive is not None)  # the hash beside the analysis
    return service, analyzer


def test_delete_during_the_analysis_stops_it_and_deletes_archive_and_report(env: Env) -> None:
    service, analyzer = _analysing(env, "del1-app")
    status = service.status("del1-app")
    assert status.state is CaptureState.ANALYZING and status.archive is not None
    archive, report = Path(status.archive.path), service.store.report_path("del1-app")
    assert report.exists()  # the analysis has written (part of) its report

    result = service.delete("del1-app")  # before: 409 CaptureInProgress

    assert (result.pending, sorted(result.deleted)) == (False, sorted([str(archive), str(report)]))
    assert analyzer.stopped == ["del1-app"] and analyzer.holding == set()  # archive closed
    assert not archive.exists() and not report.exists()
    done = service.status("del1-app")
    assert (done.state, done.reason) == (CaptureState.FAILED, "DeletedWhileAnalyzing")
    assert done.archive_deleted_at is not None and done.summary is None
    assert [f.action for f in done.custody_events] == ["Captured", "Deleted"]
    deleted = done.custody_events[-1]
    assert deleted.reason == "DeletedWhileAnalyzing"
    assert deleted.sha256 == status.archive.sha256
    assert deleted.size_bytes == status.archive.size_bytes
    analyzer.release.set()
    time.sleep(0.3)
    assert not report.exists()  # nothing written afterwards
    assert service.status("del1-app").state is CaptureState.FAILED
    # The record stays as the account until the next DELETE, as after a DELETE in flight.
    assert service.delete("del1-app").deleted == []
    with pytest.raises(NotFoundError):
        service.status("del1-app")


def test_delete_of_a_job_waiting_for_its_analysis_never_analyses_it(env: Env) -> None:
    service, analyzer = _analysing(env, "busy1-app", analysis_workers=1)
    service.submit(request("wait1-app", pod="other"))
    # Hashed as it landed, though no analysis worker is free for it yet.
    until(lambda: service.status("wait1-app").archive is not None)
    status = service.status("wait1-app")
    assert status.state is CaptureState.ANALYZING
    assert status.archive is not None
    result = service.delete("wait1-app")
    assert result.deleted == [status.archive.path]
    analyzer.release.set()
    assert wait_terminal(service, "busy1-app").state is CaptureState.COMPLETED
    time.sleep(0.2)
    assert analyzer.started == ["busy1-app"]
    done = service.status("wait1-app")
    assert (done.state, done.custody_events[-1].action) == (CaptureState.FAILED, "Deleted")


def test_delete_of_a_held_job_during_its_analysis_is_refused(env: Env) -> None:
    service, analyzer = _analysing(env, "held1-app")
    service.set_hold("held1-app", True)
    with pytest.raises(ConflictError) as refused:
        service.delete("held1-app")
    assert refused.value.reason == "HeldNotExported"
    assert analyzer.stopped == []  # the analysis goes on
    analyzer.release.set()
    done = wait_terminal(service, "held1-app")
    assert done.state is CaptureState.COMPLETED and done.archive is not None
    assert Path(done.archive.path).exists()


def test_a_restart_resumes_an_analysis_in_the_analysis_pool(env: Env) -> None:
    """A job a restart left Analyzing is analysed again, by the analysis pool."""
    archive = env.kubelet.write_archive("default", "counter", "app")
    store = JobStore(env.state)
    record, _ = store.create_if_absent(request("again1-app"))
    record.status.state = CaptureState.ANALYZING
    digest, size = sha256_file(archive)
    record.status.archive = ArchiveInfo(
        path=str(archive), sha256=digest, size_bytes=size, captured_at=datetime.now(UTC)
    )
    store.save(record)
    analyzer = GatedAnalyzer()
    analyzer.release.set()
    service = env.service(analyzer=analyzer, workers=1)
    service.start()
    assert wait_terminal(service, "again1-app").state is CaptureState.COMPLETED
    assert analyzer.started == ["again1-app"] and env.kubelet.calls == []


def _holders(path: Path) -> list[int]:
    """Processes with ``path`` open (from /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
            if any(str(fd.readlink()) == str(path) for fd in fds):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow  # starts analysis processes
def test_a_stopped_analysis_process_is_killed_and_lets_go_of_the_archive(tmp_path: Path) -> None:
    archive, report = tmp_path / "archive.tar", tmp_path / "report.json"
    os.mkfifo(archive)
    writer = os.open(archive, os.O_RDWR)  # the child opens it, then waits for bytes forever
    try:
        analyzer, stop = ProcessAnalyzer(1), threading.Event()
        failure: list[BaseException] = []

        def analyse() -> None:
            try:
                analyzer(archive_info(archive), report, request("stop1-app"), stop)
            except ForensicCheckpointError as exc:
                failure.append(exc)

        worker = threading.Thread(target=analyse)
        worker.start()
        until(lambda: [pid for pid in _holders(archive) if pid != os.getpid()], timeout=20)
        started = time.monotonic()
        stop.set()
        worker.join(10)
        assert time.monotonic() - started < 2
        [error] = failure
        assert isinstance(error, ForensicCheckpointError) and error.reason == "AnalysisStopped"
        assert _holders(archive) == [os.getpid()]  # only the test's own end
        assert not report.exists()
    finally:
        os.close(writer)


def test_a_delete_stops_only_its_own_jobs_analysis(env: Env) -> None:
    service, analyzer = _analysing(env, "one1-app", analysis_workers=2)
    service.submit(request("two1-app", pod="two"))
    until(lambda: "two1-app" in analyzer.holding)
    service.delete("one1-app")
    assert analyzer.stopped == ["one1-app"] and analyzer.holding == {"two1-app"}
    analyzer.release.set()
    done = wait_terminal(service, "two1-app")
    assert done.state is CaptureState.COMPLETED and done.archive is not None
    assert done.archive.sha256 == sha256(Path(done.archive.path))
