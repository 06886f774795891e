"""`forensic-checkpoint demo`: the whole flow for one checkpoint on a local dev cluster.

Starts a 3-node dev cluster, applies deploy/rbac, runs three agents and the operator as local
processes (each with its own ServiceAccount token), creates a running pod from the CRI-O blog
sample and a ForensicCheckpoint that searches its memory for the secret, waits for it, then
prints ``kubectl get fcp`` and the analysis summary from the status.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HELP = "Run the operator end to end on a local dev cluster and show one analysed checkpoint."

NAMESPACE = "default"
NODES = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--search", default="RANDOM_4105_KEY", help="literal to find in memory")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--timeout", type=float, default=120.0)


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint.cli.stack import LocalStack
    from forensic_checkpoint.devcluster import access, binaries
    from forensic_checkpoint.devcluster.cluster import DevCluster
    from forensic_checkpoint.k8s.client import close

    work = args.dir or Path(tempfile.mkdtemp(prefix="forensic-checkpoint-demo-"))
    print(f"demo: starting a {NODES}-node dev cluster in {work}", file=sys.stderr)
    cluster = DevCluster.start(work / "cluster", nodes=NODES, die_with_parent=not args.keep)
    stack: LocalStack | None = None
    try:
        api = cluster.admin_client()
        access.ensure_namespace(api, NAMESPACE)
        close(api)
        stack = LocalStack.prepare(cluster, work / "stack")
        for i in range(NODES):
            stack.start_agent(f"node-{i + 1}")
        stack.start_operator([NAMESPACE])
        print(
            "demo: agents and operator running; creating pod and ForensicCheckpoint",
            file=sys.stderr,
        )
        cluster.create_running_pod(NAMESPACE, "counters", "node-1", containers=("counter",))
        stack.create_checkpoint(
            NAMESPACE, "blog", {"podName": "counters", "analysis": {"searches": [args.search]}}
        )
        obj = stack.wait_phase(NAMESPACE, "blog", timeout=args.timeout)
        kubectl = binaries.locate("kubectl")
        subprocess.run(
            [
                str(kubectl),
                "--kubeconfig",
                str(cluster.kubeconfig),
                "-n",
                NAMESPACE,
                "get",
                "fcp",
                "-o",
                "wide",
            ],
            check=False,
        )
        status = obj["status"]
        print(json.dumps({"phase": status["phase"], "message": status.get("message")}, indent=2))
        for container in status.get("containers", []):
            print(f"--- container {container['name']}: {container['phase']}")
            print(
                json.dumps(
                    {k: container.get(k) for k in ("archive", "summary", "reason", "message")},
                    indent=2,
                )
            )
        if args.keep:
            print(f"demo: cluster kept; kubeconfig {cluster.kubeconfig}", file=sys.stderr)
        return 0 if status["phase"] == "Completed" else 1
    finally:
        if not args.keep:
            if stack is not None:
                stack.stop()
            cluster.stop()
            if args.dir is None:
                shutil.rmtree(work, ignore_errors=True)
