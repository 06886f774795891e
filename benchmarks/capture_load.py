"""Capture load: 50 ForensicCheckpoints across 3 nodes at once, end to end.

Starts a 3-node dev cluster, the RBAC of deploy/rbac, three agents and the operator as local
processes (the same stack as the operator's end-to-end tests), creates one running pod per
checkpoint spread over the nodes (each checkpoint gives the real CRI-O blog sample), then
creates all ForensicCheckpoints as fast as the API server takes them and reports:

* the wall time until every one is Completed (goal: < 60 s) as a ratio to the goal;
* p50/p95/max of creation -> ``status.completedAt`` per checkpoint;
* kubelet checkpoint calls counted by the fake kubelets (must equal the checkpoints);
* peak RSS of the operator and of each agent (process group, analysis workers included).

    python -m benchmarks.capture_load [--count 50] [--goal 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.cluster.pods import create_running_pod
from forensic_checkpoint_dev.repo import REPO_ROOT
from forensic_checkpoint_dev.stack import LocalStack

NAMESPACE = "load"
NODES = 3
#: Named on every pod: the fake kubelets' default archive is the containerd sample.
BLOG_ARCHIVE = REPO_ROOT / "tests" / "data" / "counter-blog-crio.tar.zst"


def _group_rss_kib(pgid: int) -> int:
    """Summed VmRSS of every process in process group ``pgid``."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


class RssSampler(threading.Thread):
    def __init__(self, groups: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.groups = groups
        self.peak = dict.fromkeys(groups, 0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            for name, pgid in self.groups.items():
                self.peak[name] = max(self.peak[name], _group_rss_kib(pgid))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--goal", type=float, default=60.0, help="seconds until all Completed")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="capture-load-"))
    cluster = DevCluster.start(work / "cluster", nodes=NODES, die_with_parent=True)
    stack: LocalStack | None = None
    try:
        api = cluster.admin_client()
        access.ensure_namespace(api, NAMESPACE)
        stack = LocalStack.prepare(cluster, work / "stack")
        for i in range(NODES):
            stack.start_agent(f"node-{i + 1}")
        stack.start_operator([NAMESPACE])
        names = [f"load-{i:03d}" for i in range(args.count)]
        for i, name in enumerate(names):
            create_running_pod(
                api,
                NAMESPACE,
                name,
                f"node-{i % NODES + 1}",
                containers=("app",),
                archive=str(BLOG_ARCHIVE),
            )
        groups = {"operator": stack.operator_process.pid if stack.operator_process else 0}
        groups.update({f"agent-{n}": p.pid for n, p in stack.agents.items()})
        sampler = RssSampler(groups)
        sampler.start()

        started = time.monotonic()
        for name in names:
            stack.create_checkpoint(NAMESPACE, name, {"podName": name})
        created_s = time.monotonic() - started
        base = f"/apis/forensic-checkpoint.dev/v1alpha1/namespaces/{NAMESPACE}/forensiccheckpoints"
        items: list[dict[str, Any]] = []
        while time.monotonic() - started < args.timeout:
            items = apiserver.request(api, "GET", base)["items"]
            if all((o.get("status") or {}).get("phase") in ("Completed", "Failed") for o in items):
                break
            time.sleep(0.25)
        wall = time.monotonic() - started
        sampler.done.set()
        sampler.join()

        phases = [(o.get("status") or {}).get("phase") for o in items]
        latencies = [
            (
                _ts(o["status"]["completedAt"]) - _ts(o["metadata"]["creationTimestamp"])
            ).total_seconds()
            for o in items
            if (o.get("status") or {}).get("completedAt")
        ]
        kubelet_calls = sum(
            1 for node in cluster.nodes for c in node.calls() if f"/{NAMESPACE}/" in c["path"]
        )
        close(api)
        result = {
            "checkpoints": args.count,
            "completed": phases.count("Completed"),
            "failed": phases.count("Failed"),
            "createSeconds": round(created_s, 2),
            "allDoneSeconds": round(wall, 2),
            "goalSeconds": args.goal,
            "allDoneToGoalRatio": round(wall / args.goal, 3),
            "createToCompletedSeconds": {
                "p50": round(statistics.median(latencies), 2) if latencies else None,
                "p95": round(_percentile(latencies, 0.95), 2) if latencies else None,
                "max": round(max(latencies), 2) if latencies else None,
            },
            "kubeletCheckpointCalls": kubelet_calls,
            "peakRssMiB": {k: round(v / 1024, 1) for k, v in sampler.peak.items()},
        }
        print(json.dumps(result, indent=2))
        return 0 if result["completed"] == args.count and wall <= args.goal else 1
    finally:
        if stack is not None:
            stack.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
