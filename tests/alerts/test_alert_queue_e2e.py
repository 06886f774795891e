"""A burst of alerts over the concurrency cap is captured, in order, and survives a restart
(issue 19, item 1).

Before: 20 alerts at once for 20 pods gave 3 captures and 17 ``ConcurrencyLimit`` refusals,
and neither Falco nor Alertmanager (for hours) resends, so the evidence of 17 pods was lost.
Now an alert over the cap is answered ``Queued``: its ForensicCheckpoint is created at once and
waits in phase Queued until the operator admits it, in the order the alerts arrived. Only past
the queue bound is an alert refused, loudly (``QueueFull``: metric, WARNING log line, Warning
Event on the policy).

The operator (with its receiver, ``--alerts-port``) and two agents run as processes on a
two-node dev cluster of this module's own (``forensic_checkpoint_dev.stack.LocalStack``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.alert_stack import POLICIES, alert_stack, notification
from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.cluster.pods import create_running_pod
from forensic_checkpoint_dev.stack import LocalStack

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAMESPACE = "alert-queue"
POLICY = "queue-all"
NODES = ("node-1", "node-2")
#: One capture at a time, four may wait: a burst of six is 1 Capture, 4 Queued, 1 QueueFull.
CAP, QUEUE = 1, 4
LIMITS = ("--alerts-max-concurrent", str(CAP), "--alerts-max-queued", str(QUEUE))


def burst(pods: list[str], name: str = "Burst") -> dict[str, Any]:
    """One Alertmanager notification with one firing alert per pod, in this order."""
    return notification(NAMESPACE, pods, name=name)


def kubelet_order(cluster: DevCluster, pods: list[str]) -> list[str]:
    """The pods whose checkpoint the fake kubelets were asked for, by time of the call."""
    calls = [c for node in cluster.nodes for c in node.calls()]
    named = [(c["time"], p) for c in calls for p in pods if f"/{NAMESPACE}/{p}/" in c["path"]]
    return [p for _, p in sorted(named)]


@pytest.fixture(scope="module")
def queue_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DevCluster, LocalStack]]:
    if binaries.missing():
        if not binaries.go_available():
            pytest.skip("cluster tools are not built and no Go toolchain is installed")
        binaries.ensure(build=True)
    root = tmp_path_factory.mktemp("alert-queue")
    with alert_stack(
        root, namespace=NAMESPACE, policy=POLICY, nodes=len(NODES), operator_args=LIMITS
    ) as (cluster, stack):
        yield cluster, stack


def _pods(cluster: DevCluster, prefix: str, count: int, fault: str | None = None) -> list[str]:
    api = cluster.admin_client()
    names = [f"{prefix}-{i}" for i in range(count)]
    for i, name in enumerate(names):
        create_running_pod(api, NAMESPACE, name, NODES[i % len(NODES)], fault=fault)
    close(api)
    return names


def _checkpoints(cluster: DevCluster, answer: dict[str, Any]) -> list[str]:
    return [str(d["checkpoint"]).split("/", 1)[1] for d in answer["decisions"] if "checkpoint" in d]


def test_a_burst_over_the_cap_is_queued_and_captured_in_order(
    queue_stack: tuple[DevCluster, LocalStack],
) -> None:
    cluster, stack = queue_stack
    pods = _pods(cluster, "burst", CAP + QUEUE + 1)

    answer = stack.post_alerts("alertmanager", burst(pods))

    assert answer.status_code == 200, answer.text
    reasons = [d["reason"] for d in answer.json()["decisions"]]
    assert reasons == ["Capture"] * CAP + ["Queued"] * QUEUE + ["QueueFull"], reasons
    names = _checkpoints(cluster, answer.json())
    assert len(names) == CAP + QUEUE
    for name in names:
        obj = stack.wait_phase(NAMESPACE, name, ("Completed",), timeout=120)
        assert obj["spec"]["reason"]["alert"]["acceptedAt"], obj["spec"]
    # One call per captured pod, in the order the alerts arrived (cap 1: strictly one by one).
    assert kubelet_order(cluster, pods) == pods[: CAP + QUEUE]


def test_past_the_queue_bound_the_refusal_is_loud(
    queue_stack: tuple[DevCluster, LocalStack],
) -> None:
    """The burst above ended in one QueueFull: a metric, a Warning Event on the policy and the
    policy's status say so (the log line is checked by the unit tests)."""
    cluster, stack = queue_stack
    metrics = requests.get(f"{stack.alerts_url}/metrics", timeout=10).text
    assert 'forensic_checkpoint_alerts_total{reason="QueueFull",source="alertmanager"} 1.0' in (
        metrics
    ), [line for line in metrics.splitlines() if "alerts_total" in line]
    admin = cluster.admin_client()
    try:
        events = apiserver.request(admin, "GET", "/api/v1/namespaces/default/events")["items"]
        full = [
            e
            for e in events
            if e["involvedObject"].get("name") == POLICY and e["reason"] == "QueueFull"
        ]
        assert len(full) == 1 and full[0]["type"] == "Warning", full
        assert full[0]["message"].startswith("1 alert(s) refused: the capture queue is full")

        def counted() -> dict[str, Any]:
            policy = apiserver.request(admin, "GET", f"{POLICIES}/{POLICY}")
            return dict(policy.get("status") or {})

        # The policy's status is written at the receiver's next refresh: one more alert.
        stack.post_alerts("alertmanager", burst(["nobody"], name="Nudge"))
        deadline = time.monotonic() + 30
        while counted().get("alertsRefusedQueueFull") != 1 and time.monotonic() < deadline:
            time.sleep(1.0)
            stack.post_alerts("alertmanager", burst(["nobody"], name="Nudge"))
        status = counted()
        assert status.get("alertsRefusedQueueFull") == 1, status
        assert status.get("capturesQueued") == QUEUE, status
    finally:
        close(admin)


def test_a_queued_alert_survives_an_operator_restart(
    queue_stack: tuple[DevCluster, LocalStack],
) -> None:
    """The first capture holds the only slot for 20 s (the kubelet is slow); the second alert
    is Queued. The operator is killed and started again: the queued capture is still Queued
    (the slot is still held, now known from the API server alone), then admitted and captured
    once the first is done. Before, it was refused and lost; a queue in memory only would have
    lost it with the operator."""
    cluster, stack = queue_stack
    (slow,) = _pods(cluster, "slow", 1, fault="latency=20s")
    (waiting,) = _pods(cluster, "waiting", 1)

    answer = stack.post_alerts("alertmanager", burst([slow, waiting], name="Restart"))

    assert [d["reason"] for d in answer.json()["decisions"]] == ["Capture", "Queued"]
    first, second = _checkpoints(cluster, answer.json())
    stack.wait_phase(NAMESPACE, first, ("Capturing",), timeout=30)
    stack.wait_phase(NAMESPACE, second, ("Queued",), timeout=30)
    stack.kill_operator()
    stack.start_operator([NAMESPACE], alerts=True, extra_args=LIMITS)
    time.sleep(1.0)  # the restarted operator's daemons have run (it answered healthz)
    assert (stack.get_checkpoint(NAMESPACE, second) or {})["status"]["phase"] == "Queued"
    # Still true when the above was read: the slot was the first's all along.
    assert (stack.get_checkpoint(NAMESPACE, first) or {})["status"]["phase"] == "Capturing"

    stack.wait_phase(NAMESPACE, first, ("Completed",), timeout=60)
    done = stack.wait_phase(NAMESPACE, second, ("Completed",), timeout=60)

    assert done["status"]["phase"] == "Completed"
    assert kubelet_order(cluster, [slow, waiting]) == [slow, waiting]  # once each, in order
