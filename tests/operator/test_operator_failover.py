"""Two operator replicas with leader election (``--leader-elect``) on a dev cluster of their own:
only the leader acts; SIGKILL of the leader in the middle of a burst loses no capture and makes
no second kubelet call; a replica that loses the Lease (taken over, or its renewals refused)
exits before anyone else may act."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.operator.operator_e2e_support import NODES, agents_stack

from forensic_checkpoint.k8s.client import close
from forensic_checkpoint.k8s.endpoints import LEADER_LABEL
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import processes
from forensic_checkpoint_dev.cluster.fake_nodes import FakeNode
from forensic_checkpoint_dev.manifests import apply_manifests
from forensic_checkpoint_dev.operator_replicas import LEASE_PATH, OperatorReplicas, Replica
from forensic_checkpoint_dev.stack import RBAC_DIR, SYSTEM_NAMESPACE, LocalStack

NAMESPACE = "fcp-ha"
#: Short timings (lease, renew deadline, retry), in the same proportions as the defaults.
DURATION, DEADLINE, RETRY = 4.0, 3.0, 0.5
#: What a take-over may take beyond the lease: a standby may have seen the last renewal up to
#: one retry late, tries once per retry, then starts kopf and its first handler.
BOUND = 2 * RETRY + 6.0
LEADER_METRIC = "forensic_checkpoint_operator_leader"
REPORTS = "forensic_checkpoint_operator_report_delay_seconds_count"
ALERTS_SERVICE = "fcp-ha-alerts"
SERVICE_LABEL = f"kubernetes.io/service-name={ALERTS_SERVICE}"
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{SYSTEM_NAMESPACE}/endpointslices"
SERVICE = f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/services/{ALERTS_SERVICE}"
ROLE_BINDING = (
    f"/apis/rbac.authorization.k8s.io/v1/namespaces/{SYSTEM_NAMESPACE}/rolebindings/"
    "forensic-checkpoint-operator-leader-election"
)


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A cluster of its own: the session's `stack` runs an operator without leader election."""
    with agents_stack(tmp_path_factory.mktemp("operator-ha"), NAMESPACE) as local:
        yield local


@pytest.fixture
def replicas(ha_stack: LocalStack) -> Iterator[OperatorReplicas]:
    group = OperatorReplicas(ha_stack, [NAMESPACE], (DURATION, DEADLINE, RETRY))
    try:
        yield group
    finally:
        group.stop()


def _kubelet_calls(stack: LocalStack, pod: str) -> int:
    total = 0
    for name in NODES:
        node = stack.cluster.node(name)
        assert isinstance(node, FakeNode)
        total += sum(f"/{NAMESPACE}/{pod}/" in c["path"] for c in node.calls())
    return total


def _statuses(stack: LocalStack, names: list[str]) -> dict[str, dict[str, object]]:
    return {n: (stack.get_checkpoint(NAMESPACE, n) or {}).get("status") or {} for n in names}


def _alert_args(stack: LocalStack) -> tuple[str, ...]:
    """The receiver's flags, and its selector-less Service as the chart makes it."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": ALERTS_SERVICE},
        "spec": {"ports": [{"name": "alerts", "port": 8443, "protocol": "TCP"}]},
    }
    api = stack.cluster.admin_client()
    try:
        apiserver.request(api, "POST", SERVICE.rsplit("/", 1)[0], service)
    finally:
        close(api)
    token = stack.root / "ha-alerts.token"
    token.write_text("ha-token-of-the-receiver\n")
    token.chmod(0o600)
    port = processes.free_port()
    return (
        f"--alerts-port={port}",
        "--alerts-host=127.0.0.1",
        f"--alerts-token-file={token}",
        f"--leader-elect-alerts-service={ALERTS_SERVICE}",
        # An EndpointSlice refuses loopback addresses: a documentation address stands for the
        # pod's (nothing connects to it here; the receiver listens on the loopback).
        "--pod-ip=192.0.2.10",
    )


def _alerts_slice_leader(stack: LocalStack) -> tuple[str, int] | None:
    """(the leader label, the port) of the alert Service's EndpointSlice, if there is one."""
    api = stack.cluster.admin_client()
    try:
        found = apiserver.request(api, "GET", SLICES, query={"labelSelector": f"{SERVICE_LABEL}"})
    finally:
        close(api)
    for item in found["items"]:
        return item["metadata"]["labels"][LEADER_LABEL], item["ports"][0]["port"]
    return None


def _wait_slice_names(stack: LocalStack, holder: str) -> tuple[str, int]:
    seen: list[tuple[str, int] | None] = [None]

    def named() -> bool:
        seen[0] = _alerts_slice_leader(stack)
        return seen[0] is not None and holder.endswith(seen[0][0])

    assert processes.wait_until(named, 30, interval=0.2), (seen, holder)
    assert seen[0] is not None
    return seen[0]


def test_a_failover_mid_burst_loses_nothing_and_calls_no_kubelet_twice(
    ha_stack: LocalStack, replicas: OperatorReplicas
) -> None:
    alerts = _alert_args(ha_stack)
    first, second = replicas.start(alerts), replicas.start(alerts)
    leader = replicas.leader()
    standby = second if leader is first else first
    assert leader.metric(LEADER_METRIC) == 1 and standby.metric(LEADER_METRIC) == 0
    # The alert Service points at the leader's receiver (the standby runs none).
    _, port = _wait_slice_names(ha_stack, replicas.lease()["holderIdentity"])
    assert alerts[0] == f"--alerts-port={port}"

    names = [f"burst-{i:02d}" for i in range(12)]
    for i, name in enumerate(names):
        # The dumps take 2, 4, ... 24 s at the fake kubelet: they end one after another, so the
        # burst is still running when the first capture completes and the leader is killed
        # (with the same latency, all twelve ended together on a quiet machine).
        ha_stack.cluster.create_running_pod(
            NAMESPACE,
            name,
            NODES[i % len(NODES)],
            containers=("app",),
            fault=f"latency={2 + 2 * i}s",
        )
    for name in names:
        ha_stack.create_checkpoint(NAMESPACE, name, {"podName": name})

    def some_completed() -> bool:
        phases = [s.get("phase") for s in _statuses(ha_stack, names).values()]
        return "Completed" in phases

    deadline = time.monotonic() + 60
    while not some_completed():
        assert time.monotonic() < deadline, "no capture completed within 60 s"
        time.sleep(0.2)
    # Only the leader acted: the standby reported nothing.
    assert (leader.metric(REPORTS) or 0) > 0
    assert (standby.metric(REPORTS) or 0) == 0
    before = _statuses(ha_stack, names)
    assert any(s.get("phase") != "Completed" for s in before.values()), "burst over before kill"

    killed = replicas.kill(leader)
    new = replicas.leader(timeout=DURATION + BOUND)
    takeover = time.monotonic() - killed
    assert new is standby
    assert takeover <= DURATION + BOUND, takeover
    lease = replicas.lease()
    assert lease["leaseTransitions"] >= 1
    _wait_slice_names(ha_stack, lease["holderIdentity"])  # now the new leader's receiver

    for name in names:
        obj = ha_stack.wait_phase(NAMESPACE, name, timeout=120)
        assert obj["status"]["phase"] == "Completed", (name, obj["status"])
    calls = {name: _kubelet_calls(ha_stack, name) for name in names}
    assert calls == dict.fromkeys(names, 1), calls
    assert (new.metric(REPORTS) or 0) > 0  # the new leader finished what was left

    # The slice is owned by its Service: deleting the Service (helm uninstall) deletes it.
    api = ha_stack.cluster.admin_client()
    try:
        service = apiserver.request(api, "GET", SERVICE)
        (owned,) = apiserver.request(api, "GET", SLICES, query={"labelSelector": SERVICE_LABEL})[
            "items"
        ]
        assert owned["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "name": ALERTS_SERVICE,
                "uid": service["metadata"]["uid"],
            }
        ]
        apiserver.request(api, "DELETE", SERVICE)
        assert processes.wait_until(
            lambda: _alerts_slice_leader(ha_stack) is None, 60, interval=0.5
        )
    finally:
        close(api)


@contextmanager
def _one_leader(stack: LocalStack, replicas: OperatorReplicas) -> Iterator[tuple[Replica, Any]]:
    """One replica, once it leads, and an administrator's client."""
    only = replicas.start()
    replicas.leader()
    api = stack.cluster.admin_client()
    try:
        yield only, api
    finally:
        close(api)


def test_a_replica_whose_lease_is_taken_over_exits(
    ha_stack: LocalStack, replicas: OperatorReplicas
) -> None:
    with _one_leader(ha_stack, replicas) as (only, api):
        lease = apiserver.request(api, "GET", LEASE_PATH)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease["spec"].update({"holderIdentity": "intruder", "renewTime": now, "acquireTime": now})
        apiserver.request(api, "PUT", LEASE_PATH, lease)
    taken = time.monotonic()
    code = only.process.wait(timeout=2 * RETRY + 5)
    assert code != 0 and time.monotonic() - taken <= 2 * RETRY + 2


def test_a_replica_that_cannot_renew_exits_before_the_lease_expires(
    ha_stack: LocalStack, replicas: OperatorReplicas
) -> None:
    with _one_leader(ha_stack, replicas) as (only, api):
        apiserver.request(api, "DELETE", ROLE_BINDING)  # its Lease rights are gone
        cut = time.monotonic()
        try:
            code = only.process.wait(timeout=DURATION + 5)
            stopped = time.monotonic() - cut
        finally:
            apply_manifests(api, [RBAC_DIR / "operator.yaml"])
    assert code != 0
    # Within the renew deadline (plus one try and the authorizer's cache), before the lease ends.
    assert stopped < DURATION + RETRY, stopped
