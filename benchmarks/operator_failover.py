"""Operator failover: two replicas with leader election, the leader SIGKILLed mid-burst.

A dev cluster (real kube-apiserver + etcd), the RBAC of deploy/rbac, two operator replicas as
local processes (``--leader-elect``, the chart's default timings unless given), and many fake
node agents in this process (``forensic_checkpoint_dev.fake_agents``: the real agent HTTP
server, TLS and token review; a capture completes ``--capture-seconds`` after it is queued, and
each first request of a key counts as the kubelet call the agent would make). It runs the same
burst twice, spread over the nodes:

* the baseline: no failover;
* the failover: the leader is SIGKILLed once ``--kill-at`` of the burst is Completed.

It prints, with the load average beside each figure: kill -> the new leader holds the Lease,
kill -> its first action (the first ForensicCheckpoint status it writes), captures lost (not
Completed, must be 0), duplicate kubelet calls (must be 0), the capture requests the agents
answered with the existing job (the new leader asking again for what was in flight), and
create -> Completed p50/p99 of both bursts.

    python -m benchmarks.operator_failover [--nodes 50] [--count 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from benchmarks.capture_load import _ts
from benchmarks.fleet_cluster import fleet_cluster
from benchmarks.operator_scale import _quantiles

from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.operator_replicas import OperatorReplicas, Replica

NAMESPACE = "failover"
BASE = f"/apis/forensic-checkpoint.dev/v1alpha1/namespaces/{NAMESPACE}/forensiccheckpoints"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _items(api: ApiClient, wanted: set[str]) -> list[dict[str, Any]]:
    listing = apiserver.request(api, "GET", BASE)["items"]
    return [o for o in listing if o["metadata"]["name"] in wanted]


def _phase(o: dict[str, Any]) -> str | None:
    return (o.get("status") or {}).get("phase")


def _create(api: ApiClient, names: list[str], pods: list[str]) -> dict[str, float]:
    created: dict[str, float] = {}

    def one(i: int) -> None:
        body = {
            "apiVersion": "forensic-checkpoint.dev/v1alpha1",
            "kind": "ForensicCheckpoint",
            "metadata": {"name": names[i]},
            "spec": {"podName": pods[i % len(pods)]},
        }
        apiserver.request(api, "POST", BASE, body)
        created[names[i]] = time.time()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(len(names))))
    return created


def _failover(
    api: ApiClient, replicas: OperatorReplicas, leader: Replica, wanted: set[str]
) -> dict[str, Any]:
    """SIGKILL the leader; time until another replica leads, and until its first write."""
    load = _load()
    killed = replicas.kill(leader)
    time.sleep(0.5)  # a write the killed process had sent may still land: not the new leader's
    versions = {
        o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in _items(api, wanted)
    }
    lease_seconds: float | None = None
    action_seconds: float | None = None
    while time.monotonic() - killed < 120 and action_seconds is None:
        if lease_seconds is None and any(r.leading() for r in replicas.replicas if r.alive):
            lease_seconds = round(time.monotonic() - killed, 2)
        changed = [
            o
            for o in _items(api, wanted)
            if o["metadata"]["resourceVersion"] != versions.get(o["metadata"]["name"])
        ]
        if changed:
            action_seconds = round(time.monotonic() - killed, 2)
        time.sleep(0.1)
    return {
        "killToLeaseSeconds": lease_seconds,
        "killToFirstActionSeconds": action_seconds,
        "loadAverageAtKill": load,
    }


def _burst(
    api: ApiClient,
    replicas: OperatorReplicas,
    names: list[str],
    pods: list[str],
    *,
    kill_at: float | None,
    timeout: float,
) -> dict[str, Any]:
    wanted = set(names)
    load_start = _load()
    started = time.monotonic()
    created = _create(api, names, pods)
    result: dict[str, Any] = {"checkpoints": len(names), "loadAverageAtStart": load_start}
    items: list[dict[str, Any]] = []
    while time.monotonic() - started < timeout:
        items = _items(api, wanted)
        done = sum(_phase(o) in ("Completed", "Failed") for o in items)
        if kill_at is not None and done >= kill_at * len(names):
            result["completedAtKill"] = done
            result.update(_failover(api, replicas, replicas.leader(), wanted))
            kill_at = None
            continue
        if done == len(names):
            break
        time.sleep(0.5)
    durations = [
        max(0.0, _ts(o["status"]["completedAt"]).timestamp() - created[o["metadata"]["name"]])
        for o in items
        if _phase(o) == "Completed" and o["status"].get("completedAt")
    ]
    result.update(
        {
            "allDoneSeconds": round(time.monotonic() - started, 1),
            "capturesLost": len(names) - sum(_phase(o) == "Completed" for o in items),
            "notCompleted": dict(
                Counter(
                    f"{_phase(o)}/{(o.get('status') or {}).get('reason')}"
                    for o in items
                    if _phase(o) != "Completed"
                )
            ),
            "createToCompletedSeconds": _quantiles(durations),
            "loadAverageAtEnd": _load(),
        }
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--count", type=int, default=300, help="ForensicCheckpoints per burst")
    parser.add_argument("--capture-seconds", type=float, default=2.0)
    parser.add_argument("--kill-at", type=float, default=0.3, help="share Completed at the kill")
    parser.add_argument("--lease-duration", type=float, default=15.0)
    parser.add_argument("--renew-deadline", type=float, default=10.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    timings = (args.lease_duration, args.renew_deadline, args.retry_period)
    result: dict[str, Any] = {
        "nodes": args.nodes,
        "checkpointsPerBurst": args.count,
        "captureSeconds": args.capture_seconds,
        "leaseDurationRenewDeadlineRetryPeriodSeconds": timings,
        "loadAverageAtStart": _load(),
    }
    with fleet_cluster(
        "operator-failover-",
        NAMESPACE,
        args.nodes,
        node_prefix="ha",
        capture_seconds=args.capture_seconds,
    ) as env:
        replicas = OperatorReplicas(env.stack, [NAMESPACE], timings)
        try:
            replicas.start()
            replicas.start()
            replicas.leader(timeout=args.lease_duration + 30)
            for label, kill_at in (("baseline", None), ("failover", args.kill_at)):
                names = [f"{label}-{i:04d}" for i in range(args.count)]
                result[label] = _burst(
                    env.api, replicas, names, env.pods, kill_at=kill_at, timeout=args.timeout
                )
        finally:
            replicas.stop()
        calls, requests = env.fleet.kubelet_calls(), env.fleet.capture_requests()
    result["kubeletCalls"] = sum(calls.values())
    result["duplicateKubeletCalls"] = sum(n - 1 for n in calls.values() if n > 1)
    result["captureRequestsAnsweredWithTheExistingJob"] = sum(requests.values()) - len(requests)
    result["finishedAt"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(result, indent=2))
    lost = result["baseline"]["capturesLost"] + result["failover"]["capturesLost"]
    return 1 if lost or result["duplicateKubeletCalls"] else 0


if __name__ == "__main__":
    sys.exit(main())
