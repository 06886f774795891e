"""An agent's capture side on a temporary node: the real job store, capture service and export
worker, with a kubelet stand-in that writes a given archive into the checkpoint directory (the
HTTP/TLS side of the kubelet is covered by the dev-cluster tests in tests/agent)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from forensic_checkpoint.agent.capture.analysis_runner import Analyzer, ArchiveToAnalyse
from forensic_checkpoint.agent.capture.service import CaptureService
from forensic_checkpoint.agent.evidence.export_config import ExportConfig
from forensic_checkpoint.agent.evidence.export_worker import ExportWorker
from forensic_checkpoint.agent.jobs import JobStore, write_private
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.api.agent import CaptureRequest, CaptureStatus, capture_key
from forensic_checkpoint.api.forensiccheckpoint import AnalysisSummary

NODE = "node-a"


@dataclass
class DiskKubelet:
    """Copies ``sample`` to ``checkpoint-<pod>_<ns>-<container>-<n>.tar``; ``ages`` (seconds,
    popped per call) backdate the file's mtime, which the agent takes as the capture time."""

    checkpoint_dir: Path
    sample: Path
    ages: list[float] = field(default_factory=list)
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def checkpoint(self, namespace: str, pod: str, container: str, timeout: int | None) -> str:
        with self._lock:
            self.calls += 1
            n = self.calls
            age = self.ages.pop(0) if self.ages else 0.0
        target = self.checkpoint_dir / f"checkpoint-{pod}_{namespace}-{container}-{n}.tar"
        shutil.copyfile(self.sample, target)
        stamp = time.time() - age
        os.utime(target, (stamp, stamp))
        return str(target)


def report_writer(
    archive: ArchiveToAnalyse, report: Path, request: CaptureRequest, stop: threading.Event
) -> AnalysisSummary:
    write_private(report, json.dumps({"archive": Path(archive.path).name}).encode())
    return AnalysisSummary()


class Node:
    def __init__(
        self,
        root: Path,
        sample: Path,
        export: ExportConfig | None = None,
        analyzer: Analyzer = report_writer,
    ) -> None:
        self.state_dir = root / "state"
        self.checkpoint_dir = root / "checkpoints"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.kubelet = DiskKubelet(self.checkpoint_dir, sample)
        self.metrics = AgentMetrics()
        self.store = JobStore(self.state_dir)
        self.service = CaptureService(
            node_name=NODE,
            store=self.store,
            kubelet=lambda: self.kubelet,
            analyzer=analyzer,
            checkpoint_dir=self.checkpoint_dir,
            metrics=self.metrics,
            export_enabled=export is not None,
        )
        self.exports = (
            ExportWorker(
                store=self.store,
                config=export,
                node_name=NODE,
                checkpoint_dir=self.checkpoint_dir,
                metrics=self.metrics,
                retry_base_seconds=0.2,
            )
            if export is not None
            else None
        )

    def capture(self, pod: str, container: str = "app", *, hold: bool = False) -> CaptureStatus:
        key = self.submit(pod, container, hold=hold)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = self.service.status(key)
            if status.state.terminal:
                return status
            time.sleep(0.05)
        raise AssertionError(f"capture {key} did not finish")

    def submit(self, pod: str, container: str = "app", *, hold: bool = False) -> str:
        """Ask for a capture without waiting for it; its key."""
        uid = f"00000000-0000-4000-8000-{self.kubelet.calls + 1:012d}"
        request = CaptureRequest(
            key=capture_key(uid, container),
            checkpoint_uid=uid,
            checkpoint_namespace="default",
            checkpoint_name=f"fcp-{pod}",
            pod_namespace="default",
            pod_name=pod,
            container=container,
            timeout_seconds=30,
            hold=hold,
        )
        self.service.submit(request)
        return request.key

    def close(self) -> None:
        self.service.shutdown(wait=True)
