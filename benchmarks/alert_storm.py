"""Alert storm: 1,000 Alertmanager notifications in 10 s, 90 % of them re-sends.

Starts the receiver against a real API server (a one-node dev cluster with one running pod per
distinct alert), sends the storm at a steady rate over HTTP with the bearer token, and reports:

* the receiver's response time (p50, p99, max) against a 100 ms goal;
* the ForensicCheckpoints that exist afterwards, counted in the API server;
* the captures started against what the configured limits allow
  (``min(max_concurrent + max_queued, burst + rate x duration)``; a queued capture is created
  at once too), and the decisions by reason.

No operator runs, so no capture finishes: the queue bound is reached and stays reached, which
is the storm case the bound exists for.

    python -m benchmarks.alert_storm [--alerts 1000] [--seconds 10] [--unique 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.api.policy import ForensicCapturePolicy
from forensic_checkpoint.controller.alerts import (
    AlertReceiverConfig,
    KubeCaptureBackend,
    serve_alerts,
)
from forensic_checkpoint.domain.alerts.capture import LABEL_SOURCE
from forensic_checkpoint.domain.alerts.policy import Limits
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster.control_plane import DevCluster

NAMESPACE = "storm"
TOKEN = secrets.token_hex(16)
P99_GOAL_SECONDS = 0.1


def notification(index: int, pod: str) -> dict[str, Any]:
    """One Alertmanager v4 notification carrying one firing alert."""
    alert = {
        "status": "firing",
        "labels": {
            "alertname": "StormAlert",
            "namespace": NAMESPACE,
            "pod": pod,
            "container": "app",
            "severity": "critical",
        },
        "annotations": {"summary": f"storm alert for {pod}"},
        "startsAt": "2026-11-28T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": f"{index:016x}",
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="StormAlert", pod="{pod}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "forensics",
        "groupLabels": {"alertname": "StormAlert"},
        "commonLabels": alert["labels"],
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


async def storm(
    url: str, alerts: int, seconds: float, distinct: int
) -> tuple[list[float], list[float], Counter[int], Counter[str]]:
    """Send ``alerts`` notifications evenly over ``seconds``; alert i is distinct alert
    ``i % distinct``, so all but ``distinct`` of them are re-sends."""
    latencies: list[float] = []
    capture_latencies: list[float] = []  # requests that created a ForensicCheckpoint
    codes: Counter[int] = Counter()
    reasons: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    bodies = [
        json.dumps(notification(i % distinct, f"pod-{i % distinct}")).encode()
        for i in range(alerts)
    ]
    interval = seconds / alerts
    started = time.perf_counter()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def send(body: bytes) -> None:
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.json()
            elapsed = time.perf_counter() - t0
            latencies.append(elapsed)
            codes[response.status] += 1
            for decision in answer.get("decisions", []):
                reasons[decision["reason"]] += 1
                if decision["reason"] == "Capture":
                    capture_latencies.append(elapsed)

        tasks = []
        for i, body in enumerate(bodies):
            delay = started + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(body)))
        await asyncio.gather(*tasks)
    return latencies, capture_latencies, codes, reasons


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


async def run(args: argparse.Namespace, cluster: DevCluster) -> int:
    api = cluster.admin_client()
    distinct = max(1, round(args.alerts * args.unique))
    print(f"creating {distinct} running pods in namespace {NAMESPACE} ...", flush=True)
    for i in range(distinct):
        cluster.create_running_pod(NAMESPACE, f"pod-{i}", cluster.nodes[0].name, containers=["app"])
    policy = ForensicCapturePolicy.model_validate(
        {
            "metadata": {"name": "storm"},
            "spec": {"match": {"namespaces": [NAMESPACE]}, "cooldownSeconds": 600},
        }
    )
    apiserver.request(
        api, "POST", "/apis/forensic-checkpoint.dev/v1alpha1/forensiccapturepolicies",
        body=policy.to_kube(),
    )  # fmt: skip
    # A freshly established CRD answers its first create and list in ~1-2 s (cold caches); warm
    # it up so the storm measures the steady state. This object has no alert labels.
    warmup = ForensicCheckpoint.model_validate(
        {"metadata": {"name": "warmup", "namespace": NAMESPACE}, "spec": {"podName": "pod-0"}}
    )
    checkpoints = (
        f"/apis/forensic-checkpoint.dev/v1alpha1/namespaces/{NAMESPACE}/forensiccheckpoints"
    )
    apiserver.request(api, "POST", checkpoints, body=warmup.to_kube())
    apiserver.request(api, "GET", checkpoints)
    apiserver.request(api, "GET", "/apis/forensic-checkpoint.dev/v1alpha1/forensiccapturepolicies")
    # The API server's own pace on this machine right now, to read the capture latency against.
    round_trips = []
    for i in range(20):
        t0 = time.perf_counter()
        apiserver.request(api, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods/pod-{i % distinct}")
        round_trips.append(time.perf_counter() - t0)
    token_file = cluster.dir / "alert-token"
    token_file.write_text(TOKEN)
    limits = Limits(
        rate_per_second=args.rate,
        burst=args.burst,
        max_concurrent=args.concurrent,
        max_queued=args.queued,
    )
    config = AlertReceiverConfig(host="127.0.0.1", port=0, token_file=token_file, limits=limits)
    server = await serve_alerts(config, KubeCaptureBackend(api), registry=CollectorRegistry())
    try:
        started = time.perf_counter()
        latencies, capture_latencies, codes, reasons = await storm(
            server.url + "/v1/alerts/alertmanager", args.alerts, args.seconds, distinct
        )
        elapsed = time.perf_counter() - started
    finally:
        await server.stop()

    listed = apiserver.request(api, "GET", checkpoints, query={"labelSelector": LABEL_SOURCE})
    created = len(listed["items"])
    allowed = min(args.concurrent + args.queued, args.burst + math.floor(args.rate * elapsed))
    started_count = reasons["Capture"] + reasons["Queued"]
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    print(f"alerts sent            {args.alerts} in {elapsed:.2f} s ({distinct} distinct)")
    print(f"HTTP status codes      {dict(sorted(codes.items()))}")
    print(f"decisions by reason    {dict(reasons.most_common())}")
    print(f"response time p50      {p50 * 1000:.2f} ms")
    print(f"response time p99      {p99 * 1000:.2f} ms  (goal {P99_GOAL_SECONDS * 1000:.0f} ms, "
          f"ratio {p99 / P99_GOAL_SECONDS:.2f})")  # fmt: skip
    print(f"response time max      {max(latencies) * 1000:.2f} ms")
    if capture_latencies:
        print(
            f"  of which captures    p50 {statistics.median(capture_latencies) * 1000:.2f} ms, "
            f"max {max(capture_latencies) * 1000:.2f} ms (pod read + create in the API server)"
        )
    print(f"API round trip p50     {statistics.median(round_trips) * 1000:.2f} ms (pod GET)")
    print(f"checkpoints created    {created} (counted in the API server)")
    print(
        f"captures started       {started_count} (queued {reasons['Queued']}) vs limits allow "
        f"{allowed} (rate {args.rate}/s, burst {args.burst}, max concurrent {args.concurrent}, "
        f"max queued {args.queued}; ratio {started_count / allowed:.2f})"
    )
    # Every request answered, no capture without its object, none beyond the limits.
    ok = codes.get(200, 0) == args.alerts and created == started_count <= allowed
    print("result                 " + ("OK" if ok else "LIMITS VIOLATED"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--unique", type=float, default=0.1, help="fraction of distinct alerts")
    parser.add_argument("--rate", type=float, default=1.0, help="captures per second")
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=10, help="max concurrent captures")
    parser.add_argument("--queued", type=int, default=0, help="max queued captures")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="alert-storm-"))
    cluster = DevCluster.start(directory / "cluster", nodes=1, die_with_parent=True)
    try:
        return asyncio.run(run(args, cluster))
    finally:
        cluster.stop(remove=True)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
