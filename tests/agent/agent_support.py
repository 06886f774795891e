"""Shared helpers of the agent tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.factories import capture_service

from forensic_checkpoint.agent.capture.analysis_runner import Analyzer, ArchiveToAnalyse
from forensic_checkpoint.agent.capture.service import CaptureService
from forensic_checkpoint.api.agent import CaptureRequest, CaptureStatus
from forensic_checkpoint.api.forensiccheckpoint import AnalysisSummary

DATA = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class Pki:
    """A CA, a serving certificate for 127.0.0.1/localhost and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verifying with it must fail
    operator_cert: Path  # CN=forensic-checkpoint-operator, signed by ca
    operator_key: Path
    rogue_cert: Path  # the same CN, signed by other_ca
    rogue_key: Path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class DirKubelet:
    """In-process stand-in for the kubelet's checkpoint call, for service-level tests.

    It does what the kubelet does on the node's disk (copies a real archive into the checkpoint
    dir under the kubelet's name, mode 0644 so the agent's chmod is observable) and counts
    calls. The HTTP/TLS/RBAC side of the real kubelet is covered by the dev-cluster tests.
    """

    def __init__(self, checkpoint_dir: Path, sample: Path, *, delay: float = 0.0) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.sample = sample
        self.delay = delay
        #: A slower (or faster) dump for some pods, by pod name.
        self.delays: dict[str, float] = {}
        self.calls: list[tuple[str, str, str, int | None]] = []
        #: (pod, start, end) of each call that returned, in time.monotonic() seconds.
        self.spans: list[tuple[str, float, float]] = []
        self.location: str | None = None  # answer this path instead of the written one
        #: Give up like the agent's client does (Timeout, connection closed) and write the
        #: archive this many seconds later anyway: the real kubelet's rare late file.
        self.late_write: float | None = None
        self.late_written: list[Path] = []
        self._lock = threading.Lock()

    def write_archive(self, namespace: str, pod: str, container: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        target = self.checkpoint_dir / f"checkpoint-{pod}_{namespace}-{container}-{stamp}.tar"
        shutil.copyfile(self.sample, target)
        target.chmod(0o644)
        return target

    def checkpoint(
        self, namespace: str, pod: str, container: str, timeout_seconds: int | None
    ) -> str:
        with self._lock:
            self.calls.append((namespace, pod, container, timeout_seconds))
        started = time.monotonic()
        time.sleep(self.delays.get(pod, self.delay))
        if self.late_write is not None:
            from forensic_checkpoint.agent.kubelet.client import KubeletCallAbandoned

            def late() -> None:
                self.late_written.append(self.write_archive(namespace, pod, container))

            timer = threading.Timer(self.late_write, late)
            timer.daemon = True
            timer.start()
            raise KubeletCallAbandoned(
                f"kubelet on node-1 did not answer the checkpoint of {namespace}/{pod}/"
                f"{container} within {self.delay:g} s",
                reason="Timeout",
            )
        target = self.write_archive(namespace, pod, container)
        self.spans.append((pod, started, time.monotonic()))
        return self.location or str(target)


def request(
    key: str,
    *,
    pod: str = "counter",
    container: str = "app",
    timeout: int = 30,
    namespace: str = "default",
) -> Any:
    from forensic_checkpoint.api.agent import CaptureRequest

    return CaptureRequest(
        key=key,
        checkpoint_uid=key.rsplit("-", 1)[0],
        checkpoint_namespace=namespace,
        checkpoint_name="fcp",
        pod_namespace=namespace,
        pod_name=pod,
        container=container,
        timeout_seconds=timeout,
    )


def archive_info(path: Path) -> ArchiveToAnalyse:
    """``path`` as the agent hands it to an analysis, its hash done (a FIFO has none)."""
    digest = sha256(path) if path.is_file() else "0" * 64
    size = path.stat().st_size if path.is_file() else 0
    return ArchiveToAnalyse(str(path), lambda: (digest, size))


def hashing_analyzer(
    archive: ArchiveToAnalyse,
    report: Path,
    request: CaptureRequest,
    stop: threading.Event | None = None,
) -> AnalysisSummary:
    """Writes what the service handed over, so tests can check the hand-over itself, and
    returns a summary a test can recognise (at once: it never needs to be stopped)."""
    from forensic_checkpoint.agent.jobs import write_private

    searches = request.analysis.searches
    digest, _ = archive.digest()  # the agent's hash, waited for as the real analysis does
    body = {"archive": archive.path, "sha256": digest, "searches": searches}
    write_private(report, json.dumps(body).encode())
    return AnalysisSummary(process_count=1)


class GatedAnalyzer:
    """An analysis that holds its archive open until ``release`` is set (a slow or hostile
    one), and stops, closing it, when the service sets the job's ``stop`` event. It writes the
    report at its start, as a real analysis may have written part of it when stopped."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[str] = []  # capture keys, in the order their analyses started
        self.stopped: list[str] = []
        self.holding: set[str] = set()  # keys whose archive is open now

    def __call__(
        self,
        archive: ArchiveToAnalyse,
        report: Path,
        request: CaptureRequest,
        stop: threading.Event | None = None,
    ) -> AnalysisSummary:
        from forensic_checkpoint.errors import ForensicCheckpointError

        with Path(archive.path).open("rb"):
            self.holding.add(request.key)
            self.started.append(request.key)
            report.write_text("{}")
            try:
                while not self.release.wait(0.02):
                    if stop is not None and stop.is_set():
                        self.stopped.append(request.key)
                        raise ForensicCheckpointError("stopped", reason="AnalysisStopped")
            finally:
                self.holding.discard(request.key)
        return hashing_analyzer(archive, report, request, stop)


class Env:
    """A node's checkpoint directory with a :class:`DirKubelet` writing to it, and the agent's
    state directory, with the capture services a test starts on them (the ``env`` fixture
    shuts them down)."""

    def __init__(self, root: Path, sample: Path) -> None:
        self.root = root
        self.checkpoints = root / "checkpoints"
        self.checkpoints.mkdir()
        self.state = root / "state"
        self.kubelet = DirKubelet(self.checkpoints, sample)
        self.services: list[CaptureService] = []

    def service(
        self,
        *,
        workers: int = 2,
        margin: float = 30.0,
        restart_window: float = 5.0,
        late_window: float = 60.0,
        analyzer: Analyzer = hashing_analyzer,
        **options: Any,
    ) -> CaptureService:
        service = capture_service(
            self.state,
            self.kubelet,
            self.checkpoints,
            analyzer,
            capture_workers=workers,
            kubelet_timeout_margin=margin,
            restart_adopt_window=restart_window,
            late_archive_window=late_window,
            poll_interval=0.1,
            **options,
        )
        self.services.append(service)
        return service


def wait_terminal(service: CaptureService, key: str, timeout: float = 20.0) -> CaptureStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = service.status(key)
        if status.state.terminal:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{key} still {service.status(key).state}")
