"""One agent under a burst with many kept archives (issue 19, part 4; benchmarks/agent_scale.py):
the queue is bounded with a retryable 503, the disk floor counts the captures in flight, the
per-request paths (and the export worker's pass) read no job record file they do not need, and
a hash leaves no large buffers behind."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.agent.agent_support import DirKubelet, Pki, hashing_analyzer, request, wait_terminal
from tests.factories import capture_service, serve_in_thread

from forensic_checkpoint.agent.capture.disk_floor import GIB, DiskFloor
from forensic_checkpoint.agent.capture.service import CaptureService
from forensic_checkpoint.agent.evidence import custody_facts
from forensic_checkpoint.agent.evidence.export_config import ExportConfig
from forensic_checkpoint.agent.evidence.export_worker import ExportWorker
from forensic_checkpoint.agent.http.auth import Authenticator
from forensic_checkpoint.agent.http.server import AgentServer, tls_context
from forensic_checkpoint.agent.jobs import JobRecord, JobStore, utcnow
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.analysis.format import file_hash as hashing
from forensic_checkpoint.api.agent import CaptureState, ExportPhase, ExportProgress

OPERATOR = "system:serviceaccount:forensic-checkpoint:operator"
TOKEN = "op-token"


class BlockingKubelet(DirKubelet):
    """A kubelet whose calls wait for ``release`` (the captures stay in flight)."""

    def __init__(self, checkpoint_dir: Path, sample: Path) -> None:
        super().__init__(checkpoint_dir, sample)
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def checkpoint(
        self, namespace: str, pod: str, container: str, timeout_seconds: int | None
    ) -> str:
        self.entered.release()
        self.release.wait(20)
        return super().checkpoint(namespace, pod, container, timeout_seconds)


def _service(
    tmp_path: Path, kubelet: DirKubelet, started: list[CaptureService], **options: Any
) -> CaptureService:
    service = capture_service(
        tmp_path / "state", kubelet, kubelet.checkpoint_dir, hashing_analyzer, **options
    )
    started.append(service)
    return service


def _blocking(tmp_path: Path, sample: Path) -> BlockingKubelet:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    return BlockingKubelet(checkpoints, sample)


def test_a_full_queue_answers_503_with_retry_after_and_records_nothing(
    tmp_path: Path, pki: Pki, sample_tar: Path, services: list[CaptureService]
) -> None:
    kubelet = _blocking(tmp_path, sample_tar)
    service = _service(tmp_path, kubelet, services, capture_workers=1, max_queued=2)
    server = AgentServer(
        ("127.0.0.1", 0),
        service=service,
        authenticator=Authenticator(lambda token: (token == TOKEN, OPERATOR), OPERATOR),
        tls=tls_context(pki.server_cert, pki.server_key),
    )
    serve_in_thread(server)
    session = requests.Session()
    session.verify, session.trust_env = str(pki.ca), False
    url = f"https://127.0.0.1:{server.port}/v1/captures"

    def post(key: str, namespace: str = "default") -> requests.Response:
        job = request(key, pod=key, namespace=namespace)
        body = job.model_dump(mode="json", by_alias=True, exclude_none=True)
        return session.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"})

    try:
        assert post("uid1-a").status_code == 202
        assert kubelet.entered.acquire(timeout=10)  # the one worker holds it: none waits
        assert [post(key).status_code for key in ("uid2-a", "uid3-a")] == [202, 202]
        refused = post("uid4-a")
        assert refused.status_code == 503, refused.text
        assert refused.json()["reason"] == "AgentQueueFull"
        assert refused.headers["Retry-After"] == "5"
        assert "--max-queued-captures=2" in refused.json()["message"]
        assert service.store.get("uid4-a") is None, "a refused request is not recorded"
        assert post("uid2-a").status_code == 200, "a known key is answered, full queue or not"
        # A namespace with nothing waiting gets into the reserve (a quarter, at least one)...
        assert post("uid6-a", namespace="quiet").status_code == 202
        assert post("uid7-a", namespace="quiet").status_code == 503
        # ... and past the reserve nobody does.
        assert post("uid8-a", namespace="other").status_code == 503
        assert b"forensic_checkpoint_agent_queue_refusals_total 3.0" in service.metrics.render()
    finally:
        kubelet.release.set()
        server.shutdown()
        server.server_close()
    assert wait_terminal(service, "uid3-a").state is CaptureState.COMPLETED
    assert post_after_drain(service) is not None


def post_after_drain(service: CaptureService) -> object:
    """Once the queue drained, a new capture is accepted again."""
    status, created = service.submit(request("uid5-a", pod="uid5-a"))
    assert created
    return status


def test_the_floor_counts_the_archives_of_captures_in_flight(
    tmp_path: Path, sample_tar: Path, services: list[CaptureService]
) -> None:
    """Free space stays 1.5 archives above the floor while the archives have not landed: the
    first capture in flight reserves one archive, so a second one at the same time is refused
    (checked against the space free now only, both went ahead and crossed the floor)."""
    size = sample_tar.stat().st_size
    floor = 2 * GIB

    def free_space(path: Path) -> tuple[int, int]:
        return floor + size * 3 // 2, 100 * GIB

    kubelet = _blocking(tmp_path, sample_tar)
    service = _service(
        tmp_path, kubelet, services, disk_floor=DiskFloor(floor, 0), free_space=free_space
    )
    kubelet.release.set()
    service.submit(request("uid0-a", pod="first"))  # this node's first archive: its size known
    assert wait_terminal(service, "uid0-a").state is CaptureState.COMPLETED
    kubelet.release.clear()
    service.submit(request("uid1-a", pod="one"))
    assert kubelet.entered.acquire(timeout=10)
    assert kubelet.entered.acquire(timeout=10)  # the first capture's call, then this one
    service.submit(request("uid2-a", pod="two"))
    refused = wait_terminal(service, "uid2-a")
    assert refused.reason == "InsufficientDiskSpace", refused
    assert f"less {2 * size} bytes expected from the captures in flight" in (refused.message or "")
    kubelet.release.set()
    assert wait_terminal(service, "uid1-a").state is CaptureState.COMPLETED
    assert [call[1] for call in kubelet.calls] == ["first", "one"]


def test_a_waiting_status_request_answers_a_new_custody_fact(tmp_path: Path) -> None:
    """While Analyzing, the operator's status request waits in the agent: it is answered when
    the archive's sha256 is recorded (the Captured fact, the job still Analyzing), so that the
    archive shows at once; otherwise only when the job moves on (issue 19)."""
    store = JobStore(tmp_path / "state")
    record, _ = store.create_if_absent(request("uid0-a", pod="p"))
    record.status.state = CaptureState.ANALYZING
    store.save(record)
    answered: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        store.wait_while("uid0-a", {CaptureState.ANALYZING}, 5.0)
        answered.append(time.monotonic() - started)

    waiting = threading.Thread(target=wait)
    waiting.start()
    time.sleep(0.3)
    store.save(record)  # a save with no news (e.g. the hold): still waiting
    time.sleep(0.3)
    assert answered == []
    custody_facts.add(record, custody_facts.captured(record, "node-a", utcnow(), 200, "/a.tar"))
    store.save(record)
    waiting.join(2)
    assert answered and 0.5 <= answered[0] < 2.0, answered
    assert store.get("uid0-a") is not None
    assert store.get("uid0-a").status.state is CaptureState.ANALYZING  # type: ignore[union-attr]


def test_status_waits_and_the_digest_list_read_no_job_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many kept archives, each save wakes every waiting status request, and the operator
    lists every job: both answer from the store's lines in memory, not by parsing every file."""
    store = JobStore(tmp_path / "state")
    for n in range(40):
        store.create_if_absent(request(f"uid{n}-a", pod=f"p{n}"))
    reopened = JobStore(tmp_path / "state")  # the lines are read once, at start
    original = JobRecord.model_validate_json
    parsed = _count_parses(monkeypatch)
    waiting = threading.Thread(
        target=reopened.wait_while, args=("uid0-a", {CaptureState.QUEUED}, 5.0)
    )
    waiting.start()
    for n in range(1, 30):  # thirty other jobs change: thirty wake-ups
        record = original((tmp_path / "state" / "jobs" / f"uid{n}-a.json").read_bytes())
        record.status.state = CaptureState.CAPTURING
        reopened.save(record)
        time.sleep(0.005)
    lines = reopened.lines()
    assert len(lines) == 40
    assert lines["uid1-a"].digest.state is CaptureState.CAPTURING
    assert lines["uid0-a"].digest.state is CaptureState.QUEUED
    assert parsed == [], f"{len(parsed)} record files parsed"
    first = original((tmp_path / "state" / "jobs" / "uid0-a.json").read_bytes())
    first.status.state = CaptureState.CAPTURING
    reopened.save(first)
    waiting.join(2)
    assert not waiting.is_alive(), "the waiting request returns when its own job changes"
    reopened.delete("uid0-a")
    assert "uid0-a" not in reopened.lines()


def test_the_digest_list_of_the_service_comes_from_memory(
    tmp_path: Path,
    sample_tar: Path,
    services: list[CaptureService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    service = _service(tmp_path, DirKubelet(checkpoints, sample_tar), services)
    for n in range(3):
        service.submit(request(f"uid{n}-a", pod=f"p{n}"))
    for n in range(3):
        assert wait_terminal(service, f"uid{n}-a").state is CaptureState.COMPLETED
    monkeypatch.setattr(JobStore, "all", lambda self: pytest.fail("every record read"))
    digests = service.digests()
    assert [item.key for item in digests.items] == ["uid0-a", "uid1-a", "uid2-a"]
    assert all(item.custody_events == 1 for item in digests.items)
    by_state, stored = service.storage()
    assert by_state["Completed"] == 3
    assert stored >= 3 * sample_tar.stat().st_size


def test_a_hash_reads_into_one_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No bytes object per read: a hash thread leaves no large freed blocks in its arena."""
    path = tmp_path / "blob"
    path.write_bytes(b"x" * (3 * 1024 * 1024 + 5))
    sizes: list[int] = []
    real_bytearray = bytearray

    def tracking(size: int) -> bytearray:
        sizes.append(size)
        return real_bytearray(size)

    monkeypatch.setattr(hashing, "bytearray", tracking, raising=False)
    digest, size = hashing.sha256_file(path)
    assert size == path.stat().st_size
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sizes == [1024 * 1024]


def test_the_export_pass_reads_only_the_jobs_it_may_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export worker's pass runs every few seconds: with every kept job's record file read
    each time, its CPU grew with the archives kept on the node."""
    store = JobStore(tmp_path / "state")
    for n in range(30):
        record, _ = store.create_if_absent(request(f"uid{n}-a", pod=f"p{n}"))
        record.status.state = CaptureState.COMPLETED
        phase = ExportPhase.EXPORTED if n else ExportPhase.RETRYING
        record.status.export = ExportProgress(
            phase=phase, next_attempt_at=datetime.now(UTC) + timedelta(hours=1)
        )
        store.save(record)
    worker = ExportWorker(
        store=store,
        config=ExportConfig(bucket="evidence", state_dir=tmp_path / "exports"),
        node_name="node-1",
        checkpoint_dir=tmp_path,
        metrics=AgentMetrics(),
    )
    parsed = _count_parses(monkeypatch)
    assert worker.run_due() == 0  # the one Retrying job's time has not come
    assert len(parsed) == 1, f"{len(parsed)} record files parsed"


def test_waiting_status_requests_are_capped_below_the_connections(
    tmp_path: Path, sample_tar: Path, services: list[CaptureService]
) -> None:
    """Past the cap a waiting request is answered at once (the operator polls), so 64 captures
    in flight cannot hold every connection the server takes."""
    kubelet = _blocking(tmp_path, sample_tar)
    service = _service(tmp_path, kubelet, services, max_waiters=2)
    service.submit(request("uid1-a"))
    assert kubelet.entered.acquire(timeout=10)
    waiting = [
        threading.Thread(
            target=service.status, args=("uid1-a",), kwargs={"wait_while": WAIT, "timeout": 10}
        )
        for _ in range(2)
    ]
    for thread in waiting:
        thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    answer = service.status("uid1-a", wait_while=WAIT, timeout=10)
    assert answer.state is CaptureState.CAPTURING
    assert time.monotonic() - started < 1.0, "the third waiter must be answered at once"
    kubelet.release.set()
    for thread in waiting:
        thread.join(10)
        assert not thread.is_alive()


WAIT = {CaptureState.QUEUED, CaptureState.CAPTURING}


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every job record file parsed from now on."""
    parsed: list[bytes] = []
    original = JobRecord.model_validate_json

    def counting(data: Any, **kw: Any) -> JobRecord:
        parsed.append(data)
        return original(data, **kw)

    monkeypatch.setattr(JobRecord, "model_validate_json", counting)
    return parsed
