"""The agent process of :mod:`benchmarks.agent_scale`: the real capture service, job store,
analysis children, orphan keeper, analysis retrier and HTTP server of one node, wired as
``agent/process.py`` wires them, without the API server (heartbeat, readiness, token reviews):
a static token stands for the operator's, and a fake kubelet answers in this process.

The fake kubelet behaves like the real node's (``forensic_checkpoint_dev.kubelet``, calibrated
on kubelet v1.36 + containerd 2.3.4, docs/alerts.md: a blog-counter dump takes about 1.3 s):
each call sleeps ``latency`` seconds, calls are not serialised, and the archive (a real sample
from tests/data, plain tar) is written under the kubelet's name with its one-second stamp.

The node's free space can be faked (``capacity``): the checkpoint directory's filesystem then
has ``capacity`` bytes, of which the distinct files in it use their size; a write that does not
fit fails like containerd's (500, ``no space left on device``) and leaves nothing behind.

    python -m benchmarks.agent_scale_node CONFIG.json
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from forensic_checkpoint.agent.capture import fair_queue, workers
from forensic_checkpoint.agent.capture.analysis_retry import AnalysisRetrier
from forensic_checkpoint.agent.capture.analysis_runner import ProcessAnalyzer
from forensic_checkpoint.agent.capture.disk_floor import DiskFloor, statvfs_space
from forensic_checkpoint.agent.capture.orphans import OrphanKeeper, OrphanPolicy
from forensic_checkpoint.agent.capture.service import CaptureService
from forensic_checkpoint.agent.http.auth import Authenticator
from forensic_checkpoint.agent.http.server import AgentServer
from forensic_checkpoint.agent.jobs import JobStore
from forensic_checkpoint.errors import KubeletError

OPERATOR = "system:serviceaccount:forensic-checkpoint:operator"
TOKEN = "bench-operator-token"  # noqa: S105 - a benchmark's loopback token


class NodeDisk:
    """The checkpoint directory's filesystem, ``capacity`` bytes big (``None``: the real one)."""

    def __init__(self, directory: Path, capacity: int | None) -> None:
        self.directory, self.capacity = directory, capacity
        self.lowest_free: int | None = None
        self._lock = threading.Lock()

    def used(self) -> int:
        seen: set[int] = set()
        total = 0
        for entry in os.scandir(self.directory):
            info = entry.stat(follow_symlinks=False)
            if info.st_ino not in seen:
                seen.add(info.st_ino)
                total += info.st_size
        return total

    def space(self, path: Path) -> tuple[int, int]:
        if self.capacity is None or path != self.directory:
            return statvfs_space(path)
        free = self.capacity - self.used()
        with self._lock:
            self.lowest_free = free if self.lowest_free is None else min(self.lowest_free, free)
        return free, self.capacity


class BenchKubelet:
    """A kubelet's ``POST /checkpoint`` as the agent's :class:`Checkpointer` sees it."""

    def __init__(self, directory: Path, archive: Path, latency: float, disk: NodeDisk) -> None:
        self.directory, self.archive, self.latency, self.disk = directory, archive, latency, disk
        self.calls = 0
        self._lock = threading.Lock()

    def checkpoint(self, namespace: str, pod: str, container: str, timeout: int | None) -> str:
        with self._lock:
            self.calls += 1
        time.sleep(self.latency)
        stamp = datetime.now().astimezone().replace(microsecond=0).isoformat()
        name = f"checkpoint-{pod}_{namespace}-{container}-{stamp.replace('+00:00', 'Z')}.tar"
        target = self.directory / name
        size = self.archive.stat().st_size
        with self._lock:  # the fit check and the write, as one filesystem would do them
            if self.disk.capacity is not None:
                free = self.disk.capacity - self.disk.used()
                self.disk.lowest_free = min(self.disk.lowest_free or free, free - size)
                if free < size:
                    raise KubeletError(
                        f"checkpointing of {namespace}/{pod}/{container} failed (rpc error: "
                        "code = Unknown desc = write: no space left on device)",
                        reason="RuntimeError",
                        status_code=500,
                    )
            shutil.copyfile(self.archive, target)
            target.chmod(0o600)
        return str(target)


class Fifo(fair_queue.FairQueue[Any]):
    """The baseline's queue: every namespace in one lane."""

    def put(self, lane: str, item: Any) -> None:
        super().put("", item)


def serve(config: dict[str, Any]) -> None:
    if config.get("fifo"):  # the baseline: one lane, first in, first out
        vars(workers)["FairQueue"] = Fifo
    state, checkpoints = Path(config["stateDir"]), Path(config["checkpointDir"])
    disk = NodeDisk(checkpoints, config.get("capacity"))
    kubelet = BenchKubelet(checkpoints, Path(config["archive"]), config["latency"], disk)
    options: dict[str, Any] = {}
    if config.get("maxQueued") is not None:
        options["max_queued"] = config["maxQueued"]
    service = CaptureService(
        node_name="bench-node",
        store=JobStore(state),
        kubelet=lambda: kubelet,
        analyzer=ProcessAnalyzer(2),
        checkpoint_dir=checkpoints,
        capture_workers=4,
        analysis_workers=2,
        disk_floor=DiskFloor(config.get("minFreeBytes", 0), 0.0),
        free_space=disk.space,
        **options,
    )
    orphans = OrphanKeeper(service=service, policy=OrphanPolicy.ADOPT, grace=600, interval=300)
    service.on_finished.append(orphans.wake)
    retrier = AnalysisRetrier(service)
    server = AgentServer(
        ("127.0.0.1", 0),
        service=service,
        authenticator=Authenticator(lambda token: (token == TOKEN, OPERATOR), OPERATOR),
        tls=None,
    )
    service.start()
    orphans.start()
    retrier.start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ready = Path(config["readyFile"])
    ready.with_suffix(".part").write_text(json.dumps({"port": server.port, "pid": os.getpid()}))
    ready.with_suffix(".part").replace(ready)
    stop = Path(config["stopFile"])
    while not stop.exists():
        time.sleep(0.2)
    result = {"kubeletCalls": kubelet.calls, "lowestFreeBytes": disk.lowest_free}
    Path(config["resultFile"]).write_text(json.dumps(result))
    server.shutdown()
    orphans.stop()
    retrier.stop()
    service.shutdown(wait=False)


if __name__ == "__main__":
    serve(json.loads(Path(sys.argv[1]).read_text()))
