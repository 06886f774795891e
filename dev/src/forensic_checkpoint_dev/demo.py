"""`forensic-checkpoint-dev demo`: the whole flow for one checkpoint on a local dev cluster.

Starts a 3-node dev cluster, applies deploy/rbac, runs three agents and the operator as local
processes (each with its own ServiceAccount token), creates a running pod whose fake kubelet
returns the recorded CRI-O blog sample (its annotation names the archive: the fake kubelets'
default is the containerd sample, which holds another secret) and a ForensicCheckpoint that
searches its memory for the secret, waits for it, then prints ``kubectl get fcp`` and the
analysis summary from the status.

With ``--real-node`` the node is real (containerd, runc, CRIU and a kubelet from
``make node-tools``): the blog's counter pod from ``e2e/`` runs on it, is sent the secret
through ``kubectl exec``, and the kubelet really checkpoints it.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forensic_checkpoint_dev.stack import LocalStack

HELP = "Run the operator end to end on a local dev cluster and show one analysed checkpoint."

NAMESPACE = "default"
NODES = 3
#: The blog's counter as CRI-O checkpointed it: ``RANDOM_4105_KEY`` (the default ``--search``)
#: is in its memory. The fake kubelets' default archive is the containerd sample, another secret.
BLOG_ARCHIVE = "tests/data/counter-blog-crio.tar.zst"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--search", default="RANDOM_4105_KEY", help="literal to find in memory")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--real-node",
        action="store_true",
        help="capture a real pod on a real node (containerd + kubelet; `make node-tools`, root)",
    )
    parser.add_argument(
        "--alerts",
        action="store_true",
        help="start the operator's alert receiver and capture through an Alertmanager alert",
    )


def _alert_capture(stack: LocalStack, search: str) -> str:
    """Create a capture policy, post one firing Alertmanager alert for the pod to the
    operator's receiver, and return the ForensicCheckpoint it created."""
    from forensic_checkpoint.api.policy import ForensicCapturePolicy
    from forensic_checkpoint.errors import ToolError
    from forensic_checkpoint.k8s.client import close
    from forensic_checkpoint_dev.apiserver import custom_object

    api = stack.cluster.admin_client()
    crd = ForensicCapturePolicy.crd
    try:
        custom_object(
            api,
            crd,
            "create",
            {
                "apiVersion": crd.api_version,
                "kind": crd.kind,
                "metadata": {"name": "demo-critical"},
                "spec": {
                    "match": {"namespaces": [NAMESPACE], "severities": ["critical"]},
                    "capture": {"analysis": {"searches": [search]}},
                },
            },
        )
    finally:
        close(api)
    labels = {
        "alertname": "CounterSecretLeak",
        "namespace": NAMESPACE,
        "pod": "counters",
        "container": "counter",
        "severity": "critical",
    }
    payload = {
        "version": "4",
        "groupKey": '{}:{alertname="CounterSecretLeak"}',
        "status": "firing",
        "receiver": "forensics",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "startsAt": datetime.now(UTC).isoformat(),
                "fingerprint": secrets.token_hex(8),
            }
        ],
    }
    print(f"demo: POST {stack.alerts_url}/v1/alerts/alertmanager", file=sys.stderr)
    deadline = time.monotonic() + 30
    while True:  # the receiver reads policies in the background, at most 5 s apart
        answer = stack.post_alerts("alertmanager", payload)
        decision = answer.json()["decisions"][0] if answer.ok else {}
        print(f"demo: receiver answered {answer.status_code} {decision}", file=sys.stderr)
        if decision.get("reason") == "Capture":
            return str(decision["checkpoint"]).split("/")[-1]
        if decision.get("reason") != "NoMatchingPolicy" or time.monotonic() > deadline:
            raise ToolError(f"the alert was not captured: {answer.text[:500]}")
        time.sleep(1)


def _real_counter(stack: LocalStack, kubectl: list[str], secret: str) -> None:
    """The blog's counter pod from e2e/, scheduled onto the real node and sent ``secret``."""
    from forensic_checkpoint_dev.repo import REPO_ROOT

    e2e = REPO_ROOT / "e2e"
    for argv in (
        ["create", "configmap", "counter", f"--from-file={e2e / 'counter.py'}"],
        ["apply", "-f", str(e2e / "counter.yaml")],
        ["wait", "--for=condition=Ready", "pod/counters", "--timeout=180s"],
        [
            "exec", "counters", "-c", "counter", "--", "python3", "-c",
            "import urllib.request, sys; "
            "urllib.request.urlopen('http://127.0.0.1:8088/secret?' + sys.argv[1]).read()",
            secret,
        ],
    ):  # fmt: skip
        print(f"demo: kubectl {' '.join(argv[:3])}", file=sys.stderr)
        subprocess.run([*kubectl, "-n", NAMESPACE, *argv], check=True, timeout=240)


def _report(status: dict[str, Any], search: str) -> bool:
    """Print the status; whether the capture Completed with ``search`` found in memory."""
    print(json.dumps({"phase": status["phase"], "message": status.get("message")}, indent=2))
    for container in status.get("containers", []):
        print(f"--- container {container['name']}: {container['phase']}")
        print(
            json.dumps(
                {k: container.get(k) for k in ("archive", "summary", "reason", "message")},
                indent=2,
            )
        )
    holders = sorted(
        {
            hit["pid"]
            for container in status.get("containers", [])
            for hit in (container.get("summary") or {}).get("memoryHits") or []
            if hit.get("pattern") == search
        }
    )
    if holders:
        print(f"demo: {search} found in the memory of pid {holders}", file=sys.stderr)
    else:
        print(f"demo: {search} was NOT found in memory", file=sys.stderr)
    return status["phase"] == "Completed" and bool(holders)


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint.k8s.client import close
    from forensic_checkpoint_dev.cluster import access, binaries
    from forensic_checkpoint_dev.cluster.control_plane import DevCluster
    from forensic_checkpoint_dev.repo import REPO_ROOT
    from forensic_checkpoint_dev.stack import LocalStack

    work = args.dir or Path(tempfile.mkdtemp(prefix="forensic-checkpoint-demo-"))
    fakes = 0 if args.real_node else NODES
    kind = "a real node" if args.real_node else f"{NODES} fake nodes"
    print(f"demo: starting a dev cluster with {kind} in {work}", file=sys.stderr)
    cluster = DevCluster.start(
        work / "cluster",
        nodes=fakes,
        die_with_parent=not args.keep,
        with_real_node=args.real_node,
    )
    kubectl = [str(binaries.locate("kubectl")), "--kubeconfig", str(cluster.kubeconfig)]
    stack: LocalStack | None = None
    try:
        api = cluster.admin_client()
        access.ensure_namespace(api, NAMESPACE)
        close(api)
        stack = LocalStack.prepare(cluster, work / "stack")
        for i in range(fakes):
            stack.start_agent(f"node-{i + 1}")
        if cluster.real_node is not None:
            stack.start_agent(cluster.real_node.name)
        stack.start_operator([NAMESPACE], alerts=args.alerts)
        print(
            "demo: agents and operator running; creating pod and ForensicCheckpoint",
            file=sys.stderr,
        )
        if args.real_node:
            _real_counter(stack, kubectl, args.search)
        else:
            cluster.create_running_pod(
                NAMESPACE,
                "counters",
                "node-1",
                containers=("counter",),
                archive=str(REPO_ROOT / BLOG_ARCHIVE),
            )
        name = "blog"
        if args.alerts:
            name = _alert_capture(stack, args.search)
        else:
            stack.create_checkpoint(
                NAMESPACE, name, {"podName": "counters", "analysis": {"searches": [args.search]}}
            )
        obj = stack.wait_phase(NAMESPACE, name, timeout=args.timeout)
        subprocess.run([*kubectl, "-n", NAMESPACE, "get", "fcp", "-o", "wide"], check=False)
        found = _report(obj["status"], args.search)
        if args.keep:
            print(f"demo: cluster kept; kubeconfig {cluster.kubeconfig}", file=sys.stderr)
        return 0 if found else 1
    finally:
        if not args.keep:
            if stack is not None:
                stack.stop()
            cluster.stop()
            if args.dir is None:
                shutil.rmtree(work, ignore_errors=True)
