"""Readiness against the dev cluster's fake kubelets: real TLS, TokenReview, SubjectAccessReview.

Each node is configured the way the issue's proof asks (gate off, old runtime, no authorisation,
each CRIU failure text); the probe round an agent would run is done here with plain HTTP, and
``domain.readiness`` must name the node's reason.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from forensic_checkpoint.agent.readiness.criu_config import (
    CriuConfigSettings,
    reconcile_criu_config,
)
from forensic_checkpoint.api.conditions import ConditionStatus
from forensic_checkpoint.cli.kubectl_forensic import main as kubectl_forensic
from forensic_checkpoint.domain.failures.classify import classify_capture_failure
from forensic_checkpoint.domain.failures.criu_log import criu_log_path
from forensic_checkpoint.domain.failures.model import FailureReason, TransportFailure
from forensic_checkpoint.domain.readiness import (
    PROBE_PATH,
    AccessReview,
    CanaryOutcome,
    KubeletProbe,
    NodeProbe,
    Readiness,
    evaluate,
)
from forensic_checkpoint.k8s.client import close, from_token
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access
from forensic_checkpoint_dev.cluster.fake_nodes import FakeNode
from forensic_checkpoint_dev.cluster.testing import ClusterHandle

pytestmark = pytest.mark.cluster

DATA = Path(__file__).parent / "data"
NODE = "node-2"  # node-1 is left to other test packages


def text(name: str) -> str:
    return (DATA / name).read_text()


@pytest.fixture(scope="module")
def agent_token(local: ClusterHandle) -> str:
    local.create_service_account("readiness-agent")
    local.grant_node_checkpoint(
        f"{local.namespace}-readiness-agent",
        [access.service_account(local.namespace, "readiness-agent")],
    )
    return local.request_token("readiness-agent")


@pytest.fixture
def node(local: ClusterHandle) -> Iterator[FakeNode]:
    fake = local.node(NODE)
    before = fake.config()
    yield fake
    fake.set_config(**before)


def probe_kubelet(node: FakeNode, token: str, path: str = PROBE_PATH) -> KubeletProbe:
    """What the agent's probe does: one authenticated POST, TLS verified with the serving CA."""
    try:
        resp = requests.post(
            node.url + path,
            headers={"Authorization": f"Bearer {token}"},
            verify=str(node.serving_ca),
            timeout=10,
        )
    except requests.exceptions.SSLError:
        return KubeletProbe(None, transport=TransportFailure.TLS)
    except requests.exceptions.Timeout:
        return KubeletProbe(None, transport=TransportFailure.TIMEOUT)
    except requests.exceptions.ConnectionError:
        return KubeletProbe(None, transport=TransportFailure.REFUSED)
    return KubeletProbe(resp.status_code, resp.text)


def access_review(local: ClusterHandle, token: str, node_name: str) -> AccessReview:
    api = from_token(local.server, token, ca_file=local.ca_file)
    try:
        review = apiserver.request(
            api,
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "verb": "create",
                        "resource": "nodes",
                        "subresource": "checkpoint",
                        "name": node_name,
                    }
                },
            },
        )
    finally:
        close(api)
    status: dict[str, Any] = review.get("status") or {}
    return AccessReview(bool(status.get("allowed")), str(status.get("reason") or ""))


def node_info(local: ClusterHandle, name: str) -> dict[str, str]:
    node = apiserver.request(local.admin_client(), "GET", f"/api/v1/nodes/{name}")
    return dict((node.get("status") or {}).get("nodeInfo") or {})


def probe_round(
    local: ClusterHandle,
    node: FakeNode,
    token: str,
    tmp_path: Path,
    canary: CanaryOutcome | None = None,
) -> Readiness:
    info = node_info(local, node.name)
    config = reconcile_criu_config(CriuConfigSettings(enabled=True), root=tmp_path)
    return evaluate(
        NodeProbe(
            container_runtime_version=info.get("containerRuntimeVersion"),
            kubelet_version=info.get("kubeletVersion"),
            kubelet=probe_kubelet(node, token),
            access_review=access_review(local, token, node.name),
            criu_config=config.observation(),
            canary=canary,
        )
    )


def test_healthy_node_is_ready_in_one_probe_round(
    local: ClusterHandle, node: FakeNode, agent_token: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    readiness = probe_round(local, node, agent_token, tmp_path)
    elapsed = time.monotonic() - started
    print(f"\nreadiness probe round on {node.name}: {elapsed:.2f} s", file=sys.stderr)
    assert (readiness.status, readiness.reason) == (ConditionStatus.TRUE, "CaptureReady"), (
        readiness.message
    )


def test_gate_off_node(
    local: ClusterHandle, node: FakeNode, agent_token: str, tmp_path: Path
) -> None:
    node.set_config(checkpointGate=False)
    readiness = probe_round(local, node, agent_token, tmp_path)
    assert (readiness.status, readiness.reason) == (
        ConditionStatus.FALSE,
        FailureReason.CHECKPOINTING_DISABLED,
    )


def test_old_runtime_node(
    local: ClusterHandle, node: FakeNode, agent_token: str, tmp_path: Path
) -> None:
    node.set_config(runtimeVersion="containerd://1.7.22")
    deadline = time.monotonic() + 10
    while node_info(local, node.name).get("containerRuntimeVersion") != "containerd://1.7.22":
        assert time.monotonic() < deadline, "the fake kubelet did not publish its new runtime"
        time.sleep(0.2)
    readiness = probe_round(local, node, agent_token, tmp_path)
    assert (readiness.status, readiness.reason) == (
        ConditionStatus.FALSE,
        FailureReason.RUNTIME_UNSUPPORTED,
    )
    assert "containerd 1.7 is too old" in readiness.message


def test_unauthorised_agent(local: ClusterHandle, node: FakeNode, tmp_path: Path) -> None:
    local.create_service_account("readiness-nobody")
    token = local.request_token("readiness-nobody")
    readiness = probe_round(local, node, token, tmp_path)
    assert (readiness.status, readiness.reason) == (
        ConditionStatus.FALSE,
        FailureReason.KUBELET_FORBIDDEN,
    )
    assert local.service_account_user("readiness-nobody") in readiness.message


def test_unauthenticated_agent(local: ClusterHandle, node: FakeNode) -> None:
    readiness = evaluate(NodeProbe(kubelet=probe_kubelet(node, "not-a-token")))
    assert (readiness.status, readiness.reason) == (
        ConditionStatus.FALSE,
        FailureReason.KUBELET_UNAUTHORIZED,
    )


def test_kubelet_certificate_from_an_unknown_ca(
    local: ClusterHandle, node: FakeNode, agent_token: str
) -> None:
    # The cluster CA did not sign the fake kubelet's serving certificate.
    assert local.ca_file is not None
    wrong = dataclasses.replace(node, serving_ca=local.ca_file)
    readiness = evaluate(NodeProbe(kubelet=probe_kubelet(wrong, agent_token)))
    assert (readiness.status, readiness.reason) == (
        ConditionStatus.FALSE,
        FailureReason.KUBELET_TLS_ERROR,
    )


CRIU_FAILURES = [
    # (recorded runtime text, recorded CRIU log the agent would read, expected reason)
    ("containerd-criu-failed.desc.txt", "containerd-tcp.dump.log", FailureReason.ESTABLISHED_TCP),
    ("crio-criu-failed.desc.txt", "crio-ghost.dump.log", FailureReason.GHOST_FILE_TOO_LARGE),
    (
        "containerd-criu-failed.desc.txt",
        "containerd-ptrace-strace.dump.log",
        FailureReason.TRACED_TASK,
    ),
    ("containerd-criu-missing.desc.txt", None, FailureReason.CRIU_MISSING),
    ("crio-disabled.desc.txt", None, FailureReason.CHECKPOINTING_DISABLED),
]


@pytest.mark.parametrize("case", CRIU_FAILURES, ids=[c[2].value for c in CRIU_FAILURES])
def test_canary_on_a_node_failing_with_each_runtime_text(
    local: ClusterHandle,
    node: FakeNode,
    agent_token: str,
    tmp_path: Path,
    case: tuple[str, str | None, FailureReason],
) -> None:
    desc, log, reason = case
    node.set_config(failWith=text(desc))
    pod = f"canary-{reason.value.lower()}"
    local.create_running_pod(pod, node.name, containers=("canary",))
    answer = probe_kubelet(node, agent_token, f"/checkpoint/{local.namespace}/{pod}/canary")
    assert answer.status_code == 500
    # The agent reads the CRIU log at the path the runtime named; the recorded log stands in.
    if log is not None:
        assert criu_log_path(answer.body) is not None
    failure = classify_capture_failure(
        status_code=answer.status_code,
        body=answer.body,
        criu_log=text(log) if log else None,
    )
    readiness = probe_round(
        local, node, agent_token, tmp_path, CanaryOutcome(succeeded=False, failure=failure)
    )
    assert (readiness.status, readiness.reason) == (ConditionStatus.FALSE, reason)
    canary = next(c for c in readiness.checks if c.name == "Canary")
    assert canary.remediation


def test_nodes_command_prints_each_nodes_reason(
    local: ClusterHandle,
    node: FakeNode,
    agent_token: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from forensic_checkpoint.api.base import API_VERSION, GROUP, VERSION
    from forensic_checkpoint.api.forensicnode import ForensicNodeStatus
    from forensic_checkpoint.cli.main import main
    from forensic_checkpoint.domain.readiness import to_status

    node.set_config(checkpointGate=False)
    checks, conditions = to_status(
        probe_round(local, node, agent_token, tmp_path), [], now=datetime.now(UTC)
    )
    status = ForensicNodeStatus(checks=checks, conditions=conditions)
    name = f"{local.namespace}-gate-off"  # cluster-scoped: keep clear of the agents' names
    base = f"/apis/{GROUP}/{VERSION}/forensicnodes"
    admin = local.admin_client()
    apiserver.request(
        admin,
        "POST",
        base,
        body={"apiVersion": API_VERSION, "kind": "ForensicNode", "metadata": {"name": name}},
    )
    try:
        apiserver.request(
            admin,
            "PATCH",
            f"{base}/{name}/status",
            body={"status": status.model_dump(mode="json", by_alias=True, exclude_none=True)},
        )
        assert main(["nodes", "--kubeconfig", str(local.kubeconfig)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[:3] == ["NODE", "READY", "REASON"]
        row = next(line.split() for line in lines if line.startswith(name))
        assert row[1:3] == ["False", "CheckpointingDisabled"]
        assert main(["nodes", "--kubeconfig", str(local.kubeconfig), "-o", "json"]) == 0
        listed = {n["node"]: n for n in json.loads(capsys.readouterr().out)}
        gate = next(c for c in listed[name]["checks"] if c["name"] == "FeatureGate")
        assert "ContainerCheckpoint" in gate["remediation"]
        # `kubectl forensic nodes` is the same table through the kubectl plugin.
        assert kubectl_forensic(["--kubeconfig", str(local.kubeconfig), "nodes"]) == 0
        row = next(
            line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(name)
        )
        assert row[1:3] == ["False", "CheckpointingDisabled"]
    finally:
        apiserver.request(admin, "DELETE", f"{base}/{name}")
