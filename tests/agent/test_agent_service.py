"""Capture jobs end to end on disk: one kubelet call per key, restart adoption, deletion."""

from __future__ import annotations

import json
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.agent.agent_support import Env, request, sha256, wait_terminal

from forensic_checkpoint.agent.capture.adoption import INTERRUPTED
from forensic_checkpoint.agent.jobs import JobStore
from forensic_checkpoint.api.agent import CaptureState
from forensic_checkpoint.errors import NotFoundError


def test_capture_completes_with_the_archive_hash_and_private_files(env: Env) -> None:
    service = env.service()
    status, created = service.submit(request("uid1-app"))
    assert created and status.state is CaptureState.QUEUED
    done = wait_terminal(service, "uid1-app")
    assert done.state is CaptureState.COMPLETED, done
    assert done.archive is not None
    archive = Path(done.archive.path)
    assert archive.parent == env.checkpoints.resolve()
    assert done.archive.sha256 == sha256(archive)
    assert done.archive.size_bytes == archive.stat().st_size
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    report = service.report_file("uid1-app")
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert json.loads(report.read_text())["sha256"] == done.archive.sha256
    # The status digest comes with the status, so the operator never downloads the report.
    assert done.summary is not None and done.summary.process_count == 1
    assert env.kubelet.calls == [("default", "counter", "app", 30)]
    assert done.started_at is not None and done.finished_at is not None
    text = service.metrics.render().decode()
    assert 'forensic_checkpoint_agent_captures_total{outcome="Completed"} 1.0' in text


def test_the_status_says_where_the_time_went(env: Env) -> None:
    """Each stage's milliseconds, and the same in the stage histogram: a 0.4 s kubelet call
    behind another container's call shows as 0.4 s queued and 0.4 s in the kubelet."""
    env.kubelet.delay = 0.4
    service = env.service(workers=1)
    service.submit(request("uid-first-app"))
    service.submit(request("uid-second-app", pod="other"))
    first = wait_terminal(service, "uid-first-app")
    done = wait_terminal(service, "uid-second-app")
    assert done.state is CaptureState.COMPLETED, done
    timings = done.timings
    assert timings is not None and first.timings is not None
    assert timings.kubelet_ms is not None and 400 <= timings.kubelet_ms < 3000
    assert timings.queued_ms is not None and timings.queued_ms >= 350  # behind the first
    assert first.timings.queued_ms is not None and first.timings.queued_ms < 350
    assert timings.hash_ms is not None and timings.analysis_ms is not None
    assert done.started_at is not None and done.finished_at is not None
    # The hash runs beside the analysis: the two overlap, and the stages account for the time.
    stages = timings.kubelet_ms + max(timings.hash_ms, timings.analysis_ms)
    wall = (done.finished_at - done.started_at).total_seconds() * 1000
    # What is left is the agent's bookkeeping (record writes, hand-over to a worker).
    assert stages <= wall + 50 and wall - stages < 1000, (wall, timings)
    text = service.metrics.render().decode()
    for stage in ("queued", "kubelet", "hash", "analysis"):
        line = f'forensic_checkpoint_agent_stage_duration_seconds_count{{stage="{stage}"}} 2.0'
        assert line in text, stage


def test_same_key_twice_is_one_kubelet_call(env: Env) -> None:
    service = env.service()
    _, first = service.submit(request("uid1-app"))
    again, second = service.submit(request("uid1-app"))
    assert (first, second) == (True, False)
    assert again.key == "uid1-app"
    wait_terminal(service, "uid1-app")
    _, third = service.submit(request("uid1-app"))
    assert third is False
    # a restarted agent with the same state dir does not call again either
    env.service().start()
    time.sleep(0.3)
    assert len(env.kubelet.calls) == 1


@pytest.mark.slow  # waits for the kubelet call to end
def test_restart_during_the_kubelet_call_adopts_the_archive(env: Env) -> None:
    """The first agent wrote Capturing and died in the call; the kubelet finished the call."""
    store = JobStore(env.state)
    record, _ = store.create_if_absent(request("uid2-app"))
    record.status.state = CaptureState.CAPTURING
    record.kubelet_called_at = record.status.started_at = datetime.now(UTC)
    store.save(record)
    # an older archive of the same container (another capture, earlier) must not be taken
    old = env.checkpoints / "checkpoint-counter_default-app-2020-01-01T00:00:00Z.tar"
    old.write_bytes(b"older capture")

    service = env.service()
    service.start()
    time.sleep(0.3)
    assert service.status("uid2-app").state is CaptureState.CAPTURING
    written = env.kubelet.write_archive("default", "counter", "app")  # the kubelet's late write
    done = wait_terminal(service, "uid2-app")
    assert done.state is CaptureState.COMPLETED, done
    assert done.archive is not None and Path(done.archive.path) == written.resolve()
    assert done.archive.sha256 == sha256(written)
    assert env.kubelet.calls == []  # the restarted agent never called the kubelet


@pytest.mark.slow  # waits for the cancelled dump
def test_restart_without_an_archive_fails_promptly_saying_the_dump_was_cancelled(
    env: Env,
) -> None:
    """The restart closed the kubelet call's connection, and the kubelet cancels the dump with
    it: the restarted agent looks for a few seconds, not for the call's 10 minutes."""
    store = JobStore(env.state)
    record, _ = store.create_if_absent(request("uid3-app", timeout=600))
    record.status.state = CaptureState.CAPTURING
    record.kubelet_called_at = datetime.now(UTC)
    store.save(record)
    service = env.service(restart_window=1.0)
    started = time.monotonic()
    service.start()
    done = wait_terminal(service, "uid3-app", timeout=10)
    assert time.monotonic() - started < 5
    assert done.state is CaptureState.FAILED
    assert done.reason == INTERRUPTED
    message = done.message or ""
    assert "cancels the checkpoint when the calling agent dies" in message
    assert "no archive was written" in message and "not repeated automatically" in message
    assert "Re-create the ForensicCheckpoint" in (done.remediation or "")
    assert done.late_archive_watch_until is None  # nothing to watch for after a restart
    assert env.kubelet.calls == []


@pytest.mark.slow  # waits for a file still growing
def test_restart_waits_for_an_archive_still_being_written(env: Env) -> None:
    """The runtime was writing the archive when the agent died (the rare late file): a file
    that still grows is waited for past the short window, then adopted whole."""
    store = JobStore(env.state)
    record, _ = store.create_if_absent(request("uid9-app"))
    record.status.state = CaptureState.CAPTURING
    record.kubelet_called_at = datetime.now(UTC)
    store.save(record)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    growing = env.checkpoints / f"checkpoint-counter_default-app-{stamp}.tar"
    data = env.kubelet.sample.read_bytes()

    def write_slowly() -> None:
        with growing.open("wb") as out:
            for start in range(0, len(data), len(data) // 20 + 1):
                out.write(data[start : start + len(data) // 20 + 1])
                out.flush()
                time.sleep(0.1)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    service = env.service(restart_window=0.3)
    service.start()
    done = wait_terminal(service, "uid9-app")
    writer.join()
    assert done.state is CaptureState.COMPLETED, done
    assert done.archive is not None and done.archive.sha256 == sha256(growing)
    assert done.archive.size_bytes == len(data)
    assert env.kubelet.calls == []


def test_restart_adopts_only_unclaimed_archives(env: Env) -> None:
    service = env.service()
    service.submit(request("uid4-app"))
    first = wait_terminal(service, "uid4-app")
    assert first.archive is not None
    store = JobStore(env.state)
    record, _ = store.create_if_absent(request("uid5-app", timeout=1))
    record.status.state = CaptureState.CAPTURING
    record.kubelet_called_at = first.started_at  # same second as the finished capture
    store.save(record)
    again = env.service(restart_window=0.5)
    again.start()
    done = wait_terminal(again, "uid5-app")
    assert done.state is CaptureState.FAILED and done.reason == INTERRUPTED


def test_queued_jobs_resume_after_a_restart(env: Env) -> None:
    JobStore(env.state).create_if_absent(request("uid6-app"))
    service = env.service()
    service.start()
    assert wait_terminal(service, "uid6-app").state is CaptureState.COMPLETED
    assert len(env.kubelet.calls) == 1


def test_a_path_outside_the_checkpoint_dir_is_refused(env: Env, tmp_path: Path) -> None:
    elsewhere = tmp_path / "etc-shadow"
    elsewhere.write_text("root:*:")
    env.kubelet.location = str(elsewhere)
    service = env.service()
    service.submit(request("uid7-app"))
    done = wait_terminal(service, "uid7-app")
    assert done.state is CaptureState.FAILED and done.reason == "UnsafeArchivePath"
    assert done.archive is None


def test_delete_in_flight_marks_the_job_and_deletes_the_archive_when_it_lands(env: Env) -> None:
    """issue 15 item 8: DELETE while the kubelet call runs is cancel + mark + watch: the job
    stays, and the archive the call writes is hashed and deleted on landing (a Deleted fact)."""
    env.kubelet.delay = 0.5
    service = env.service()
    service.submit(request("uid9-app"))
    time.sleep(0.1)
    result = service.delete("uid9-app")
    assert (result.pending, result.deleted) == (True, [])
    done = wait_terminal(service, "uid9-app")
    assert (done.state, done.reason, done.archive) == (
        CaptureState.FAILED,
        "DeletedWhileCapturing",
        None,
    )
    [fact] = done.custody_events
    assert (fact.action, fact.reason) == ("Deleted", "DeletedWhileCapturing")
    assert fact.sha256 is not None and fact.sha256 in (done.message or "")
    assert list(env.checkpoints.glob("checkpoint-*")) == []
    assert 'orphan_archives_total{action="late-deleted"} 1.0' in service.metrics.render().decode()


def test_delete_removes_archive_and_report_only_when_finished(env: Env) -> None:
    env.kubelet.delay = 0.5
    service = env.service()
    service.submit(request("uid8-app"))
    done = wait_terminal(service, "uid8-app")
    assert done.archive is not None
    archive, report = Path(done.archive.path), service.report_file("uid8-app")
    kept = archive.stat().st_size + report.stat().st_size
    text = service.metrics.render().decode()
    assert 'forensic_checkpoint_agent_jobs{state="Completed"} 1.0' in text
    stored = next(
        line for line in text.splitlines() if line.startswith("forensic_checkpoint_agent_stored")
    )
    assert float(stored.split()[1]) == kept
    result = service.delete("uid8-app")
    assert sorted(result.deleted) == sorted([str(archive), str(report)])
    assert not archive.exists() and not report.exists()
    with pytest.raises(NotFoundError):
        service.status("uid8-app")
    text = service.metrics.render().decode()
    assert 'forensic_checkpoint_agent_jobs{state="Completed"} 0.0' in text
    assert "forensic_checkpoint_agent_stored_bytes 0.0" in text


@pytest.mark.slow  # eight delayed kubelet calls
def test_concurrent_captures_all_complete_with_one_call_each(env: Env) -> None:
    env.kubelet.delay = 0.2
    service = env.service(workers=3)
    keys = [f"uid{n}-app" for n in range(8)]
    threads = [
        threading.Thread(target=service.submit, args=(request(k, pod=f"pod{n % 4}"),))
        for n, k in enumerate(keys)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert service.queue_depth() >= 1  # 8 jobs, 3 workers: some wait in the queue
    finals = [wait_terminal(service, k) for k in keys]
    assert all(s.state is CaptureState.COMPLETED for s in finals), finals
    assert len(env.kubelet.calls) == len(keys)
    paths = {s.archive.path for s in finals if s.archive}
    assert len(paths) == len(keys)  # two captures of one pod never share an archive
    assert service.queue_depth() == 0
