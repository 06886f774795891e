"""Alert to freeze: 20 alerts at once for 20 pods on 5 nodes, end to end (issue 19, item 1).

Starts a 5-node dev cluster (real kube-apiserver, fake kubelets), five agents and the operator
with its alert receiver as local processes (the chart's default limits: 3 alert captures at
their kubelet call at once, 50 queued, 0.2/s with a burst of 30; the product's default
``--poll-interval`` of 1 s), and measures, per alert, the time from the receiver accepting it
(``spec.reason.alert.acceptedAt``, stamped by the receiver) to the agent's kubelet call
(when the fake kubelet received it). Three runs, each on pods of its own:

* ``single``: one alert at a time, each after the previous one's kubelet call: the latency
  without contention (the baseline of the ratios);
* ``dropBaseline``: the burst with ``--alerts-max-queued 0``, i.e. the behaviour before
  issue 19: the alerts over the cap are refused (then ``ConcurrencyLimit``, now ``QueueFull``);
* ``burst``: the burst with the defaults: alerts over the cap are ``Queued``.

Goals: all 20 captured, the first kubelet call within 1 s of its acceptance.

With ``--real-node`` it runs on the real node instead (containerd, runc, CRIU and a kubelet,
``forensic-checkpoint-dev``'s real node; needs root, waits for the machine's one real node when
``FORENSIC_REAL_NODE_WAIT`` is set): one alert for the blog's counter pod, from the receiver's
acceptance to the agent's kubelet call (``kubelet_called_at`` in the agent's job record,
written just before the call), the call itself, and acceptance to Completed.

    python -m benchmarks.alert_burst [--alerts 20] [--nodes 5] [--single 5] [--real-node]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from forensic_checkpoint.k8s.client import ApiClient, close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.alert_stack import alert_stack, notification
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.cluster.pods import create_running_pod
from forensic_checkpoint_dev.repo import REPO_ROOT
from forensic_checkpoint_dev.stack import LocalStack

NAMESPACE = "alert-burst"
POLICY = "burst"
CHECKPOINTS = f"/apis/forensic-checkpoint.dev/v1alpha1/namespaces/{NAMESPACE}/forensiccheckpoints"
#: The CRI-O blog recording, named on every pod (as in benchmarks.capture_load).
BLOG_ARCHIVE = REPO_ROOT / "tests" / "data" / "counter-blog-crio.tar.zst"
#: The product's default, not the dev stack's faster 0.5 s.
OPERATOR_ARGS = ("--poll-interval", "1.0")
FIRST_CALL_GOAL = 1.0


def _notification(pods: list[str], namespace: str = NAMESPACE) -> dict[str, Any]:
    return notification(namespace, pods, name="Spread")


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Bench:
    def __init__(self, cluster: DevCluster, stack: LocalStack, api: ApiClient) -> None:
        self.cluster = cluster
        self.stack = stack
        self.api = api
        self.nodes = [node.name for node in cluster.nodes]

    def pods(self, prefix: str, count: int) -> list[str]:
        names = [f"{prefix}-{i:02d}" for i in range(count)]
        for i, name in enumerate(names):
            node = self.nodes[i % len(self.nodes)]
            create_running_pod(
                self.api, NAMESPACE, name, node, containers=("app",), archive=str(BLOG_ARCHIVE)
            )
        return names

    def calls(self) -> dict[str, float]:
        """Pod -> when its first kubelet call arrived (epoch seconds)."""
        first: dict[str, float] = {}
        for node in self.cluster.nodes:
            for call in node.calls():
                pod = call["path"].split("/")[3] if call["path"].count("/") >= 4 else ""
                at = float(call.get("received", call["time"]))
                first[pod] = min(first.get(pod, at), at)
        return first

    def accepted(self) -> dict[str, float]:
        """Pod -> when the receiver accepted its alert (spec.reason.alert.acceptedAt)."""
        items = apiserver.request(self.api, "GET", CHECKPOINTS)["items"]
        return {
            o["spec"]["podName"]: _ts(o["spec"]["reason"]["alert"]["acceptedAt"])
            for o in items
            if (o["spec"].get("reason") or {}).get("alert", {}).get("acceptedAt")
        }

    def wait_calls(self, pods: list[str], timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        calls = self.calls()
        while not all(p in calls for p in pods) and time.monotonic() < deadline:
            time.sleep(0.1)
            calls = self.calls()
        return {p: calls[p] for p in pods if p in calls}

    def wait_done(self, timeout: float) -> None:
        """Until every ForensicCheckpoint is Completed or Failed: the next run starts on idle
        agents (their analyses of the previous run would compete for the two cores)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = apiserver.request(self.api, "GET", CHECKPOINTS)["items"]
            phases = [(o.get("status") or {}).get("phase") for o in items]
            if all(p in ("Completed", "Failed") for p in phases):
                return
            time.sleep(0.5)

    def restart_operator(self, *args: str) -> None:
        self.stack.kill_operator()
        self.stack.start_operator([NAMESPACE], alerts=True, extra_args=(*OPERATOR_ARGS, *args))

    def burst(self, pods: list[str], timeout: float) -> dict[str, Any]:
        answer = self.stack.post_alerts("alertmanager", _notification(pods))
        answer.raise_for_status()
        reasons = Counter(d["reason"] for d in answer.json()["decisions"])
        decisions = answer.json()["decisions"]
        created = [p for p, d in zip(pods, decisions, strict=True) if "checkpoint" in d]
        calls = self.wait_calls(created, timeout)
        accepted = self.accepted()
        latencies = [calls[p] - accepted[p] for p in created if p in calls and p in accepted]
        # The burst's first kubelet call, from the first acceptance.
        first = None
        if calls:
            first = min(calls.values()) - min(accepted[p] for p in created if p in accepted)
        return {
            "alerts": len(pods),
            "decisions": dict(reasons),
            "captured": len(calls),
            "acceptToKubeletSeconds": _summary(latencies),
            "firstKubeletCallSeconds": round(first, 3) if first is not None else None,
        }

    def single(self, pods: list[str], timeout: float) -> dict[str, Any]:
        latencies = []
        for pod in pods:
            answer = self.stack.post_alerts("alertmanager", _notification([pod]))
            answer.raise_for_status()
            calls = self.wait_calls([pod], timeout)
            accepted = self.accepted()
            if pod in calls and pod in accepted:
                latencies.append(calls[pod] - accepted[pod])
        return {"alerts": len(pods), "acceptToKubeletSeconds": _summary(latencies)}


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(statistics.median(values), 3),
        "p99": round(_percentile(values, 0.99), 3),
        "max": round(max(values), 3),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def real_node(timeout: float) -> int:
    """One alert on the real node: receiver accept -> the agent's kubelet call."""
    from forensic_checkpoint_dev.cluster import binaries
    from forensic_checkpoint_dev.demo import NAMESPACE as DEMO_NAMESPACE
    from forensic_checkpoint_dev.demo import _real_counter

    work = Path(tempfile.mkdtemp(prefix="alert-burst-real-"))
    with alert_stack(
        work,
        namespace=DEMO_NAMESPACE,
        policy=POLICY,
        nodes=0,
        with_real_node=True,
        operator_args=OPERATOR_ARGS,
    ) as (cluster, stack):
        node = cluster.real_node
        assert node is not None
        kubectl = [str(binaries.locate("kubectl")), "--kubeconfig", str(cluster.kubeconfig)]
        _real_counter(stack, kubectl, "RANDOM_4105_KEY")
        alert = notification(DEMO_NAMESPACE, ["counters"], name="Spread", container="counter")
        answer = stack.post_alerts("alertmanager", alert)
        answer.raise_for_status()
        (decision,) = answer.json()["decisions"]
        namespace, name = decision["checkpoint"].split("/", 1)
        obj = stack.wait_phase(namespace, name, timeout=timeout)
        accepted = _ts(obj["spec"]["reason"]["alert"]["acceptedAt"])
        (container,) = obj["status"]["containers"]
        job = stack.root / "agents" / node.name / "state" / "jobs"
        record = json.loads((job / f"{container['captureKey']}.json").read_text())
        called = _ts(record["kubelet_called_at"])
        captured = _ts(container["archive"]["capturedAt"])
        result = {
            "realNode": node.name,
            "decision": decision["reason"],
            "phase": obj["status"]["phase"],
            "acceptToKubeletCallSeconds": round(called - accepted, 3),
            "kubeletCallSeconds": round(captured - called, 3),
            "acceptToCompletedSeconds": round(_ts(obj["status"]["completedAt"]) - accepted, 3),
            "goalFirstKubeletCallSeconds": FIRST_CALL_GOAL,
            "loadAverage": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(result, indent=2))
        return 0 if result["acceptToKubeletCallSeconds"] <= FIRST_CALL_GOAL else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--single", type=int, default=5, help="alerts of the one-by-one baseline")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--real-node", action="store_true", help="one alert on the real node")
    args = parser.parse_args(argv)
    if args.real_node:
        return real_node(args.timeout)

    work = Path(tempfile.mkdtemp(prefix="alert-burst-"))
    with alert_stack(
        work, namespace=NAMESPACE, policy=POLICY, nodes=args.nodes, operator_args=OPERATOR_ARGS
    ) as (cluster, stack):
        api = cluster.admin_client()
        bench = Bench(cluster, stack, api)
        single_pods = bench.pods("single", args.single)
        drop_pods = bench.pods("drop", args.alerts)
        burst_pods = bench.pods("burst", args.alerts)

        single = bench.single(single_pods, args.timeout)
        bench.wait_done(args.timeout)
        bench.restart_operator("--alerts-max-queued", "0")
        drop = bench.burst(drop_pods, args.timeout)
        bench.wait_done(args.timeout)
        bench.restart_operator()
        burst = bench.burst(burst_pods, args.timeout)

        base = single["acceptToKubeletSeconds"]
        result = {
            "nodes": args.nodes,
            "limits": "chart defaults: maxConcurrent 3, maxQueued 50, rate 0.2/s, burst 30",
            "single": single,
            "dropBaseline": drop,
            "burst": burst,
            "ratios": {
                "capturedBurstVsDropBaseline": f"{burst['captured']}/{drop['captured']}",
                "burstP50VsSingleP50": _ratio(burst["acceptToKubeletSeconds"]["p50"], base["p50"]),
                "burstP99VsSingleP99": _ratio(burst["acceptToKubeletSeconds"]["p99"], base["p99"]),
            },
            "goals": {
                "allCaptured": burst["captured"] == args.alerts,
                "firstKubeletCallWithinSeconds": FIRST_CALL_GOAL,
                "firstKubeletCallMet": (burst["firstKubeletCallSeconds"] or 1e9) <= FIRST_CALL_GOAL,
            },
            "loadAverage": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(result, indent=2))
        goals = result["goals"]
        close(api)
        return 0 if goals["allCaptured"] and goals["firstKubeletCallMet"] else 1


if __name__ == "__main__":
    sys.exit(main())
