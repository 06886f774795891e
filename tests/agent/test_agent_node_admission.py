"""An agent publishes only its own node's ForensicNode (issue 15, item 1), on a real API server.

The agent's identity is deploy/rbac/agent.yaml's ServiceAccount with a token bound to its Node
object, as the DaemonSet pod's projected token is; the chart's admission policy
``<fullname>-agent-node`` (deploy/forensic-checkpoint.yaml, applied to every dev cluster) is what
refuses. Before the policy, the agent of one node could point another node's ForensicNode at
itself and receive the operator's captures, and its token, for that node.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from forensic_checkpoint.api.forensicnode import AgentStatus
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.client import ApiClient, close, from_token
from forensic_checkpoint.k8s.nodes import ForensicNodes
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access, processes
from forensic_checkpoint_dev.cluster.testing import ClusterHandle
from forensic_checkpoint_dev.manifests import apply_manifests
from forensic_checkpoint_dev.stack import AGENT_SA, RBAC_DIR, SYSTEM_NAMESPACE

pytestmark = pytest.mark.cluster

NOT_ITS_NODE = "may not write the ForensicNode of"
NO_CLAIM = "only with a token bound to its node"


@pytest.fixture
def nodes(dev_cluster: ClusterHandle) -> Iterator[tuple[str, str]]:
    """Two Node objects (no kubelet behind them: only their names and uids matter)."""
    admin = dev_cluster.admin_client()
    access.ensure_namespace(admin, SYSTEM_NAMESPACE)
    apply_manifests(admin, [RBAC_DIR / "agent.yaml"])
    suffix = uuid.uuid4().hex[:6]
    names = (f"fc-node-a-{suffix}", f"fc-node-b-{suffix}")
    for name in names:
        apiserver.request(
            admin,
            "POST",
            "/api/v1/nodes",
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}},
        )
    yield names
    for name in names:
        for path in (
            f"/api/v1/nodes/{name}",
            f"/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes/{name}",
        ):
            with contextlib.suppress(ClusterError):
                apiserver.request(admin, "DELETE", path)


def _agent(handle: ClusterHandle, node: str | None) -> ApiClient:
    token = access.request_token(handle.admin_client(), SYSTEM_NAMESPACE, AGENT_SA, node=node)
    return from_token(handle.server, token, ca_file=handle.ca_file)


@contextlib.contextmanager
def _as_agent(handle: ClusterHandle, node: str) -> Iterator[ApiClient]:
    agent = _agent(handle, node)
    try:
        yield agent
    finally:
        close(agent)


def _published(endpoint: str) -> AgentStatus:
    return AgentStatus(endpoint=endpoint, heartbeat_time=datetime.now(UTC))


def _publish(agent: ApiClient, node: str, endpoint: str, owner_uid: str = "") -> None:
    """What an agent does at start: create its ForensicNode and publish its endpoint."""
    ForensicNodes(agent).ensure(node, labels={}, owner_uid=owner_uid)
    ForensicNodes(agent).set_agent(node, _published(endpoint))


def _endpoint(repo: ForensicNodes, name: str) -> str:
    node = repo.get(name)
    assert node is not None and node.status is not None and node.status.agent is not None
    return node.status.agent.endpoint


def test_an_agent_publishes_its_own_forensic_node(
    dev_cluster: ClusterHandle, nodes: tuple[str, str]
) -> None:
    own, _ = nodes
    agent = _agent(dev_cluster, own)
    try:
        _publish(agent, own, "https://10.0.0.1:8443")
        assert _endpoint(ForensicNodes(agent), own) == "https://10.0.0.1:8443"
    finally:
        close(agent)


def test_an_agent_cannot_create_or_redirect_another_nodes_forensic_node(
    dev_cluster: ClusterHandle, nodes: tuple[str, str]
) -> None:
    own, other = nodes
    agent = _agent(dev_cluster, own)
    try:
        repo = ForensicNodes(agent)
        with pytest.raises(ClusterError, match=NOT_ITS_NODE) as created:
            repo.ensure(other, labels={})
        assert created.value.status_code == 403
        # The other node's own agent publishes; this one tries to point it at itself.
        victim = _agent(dev_cluster, other)
        try:
            _publish(victim, other, "https://10.0.0.2:8443")
        finally:
            close(victim)
        with pytest.raises(ClusterError, match=NOT_ITS_NODE) as redirected:
            repo.set_agent(other, _published("https://10.0.0.1:8443"))
        assert redirected.value.status_code == 403
        assert _endpoint(repo, other) == "https://10.0.0.2:8443"
    finally:
        close(agent)


def test_an_agent_token_without_a_node_claim_writes_no_forensic_node(
    dev_cluster: ClusterHandle, nodes: tuple[str, str]
) -> None:
    own, _ = nodes
    agent = _agent(dev_cluster, None)
    try:
        with pytest.raises(ClusterError, match=NO_CLAIM):
            ForensicNodes(agent).ensure(own, labels={})
    finally:
        close(agent)


def _node_uid(handle: ClusterHandle, name: str) -> str:
    return str(
        apiserver.request(handle.admin_client(), "GET", f"/api/v1/nodes/{name}")["metadata"]["uid"]
    )


def _owners(handle: ClusterHandle, name: str) -> list[dict[str, object]]:
    obj = apiserver.request(
        handle.admin_client(), "GET", f"/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes/{name}"
    )
    return list(obj["metadata"].get("ownerReferences") or [])


def test_a_forensic_node_is_owned_by_its_node_and_goes_with_it(
    dev_cluster: ClusterHandle, nodes: tuple[str, str]
) -> None:
    own, other = nodes
    with _as_agent(dev_cluster, own) as agent:
        _publish(agent, own, "https://10.0.0.1:8443", owner_uid=_node_uid(dev_cluster, own))
    assert _owners(dev_cluster, own) == [
        {"apiVersion": "v1", "kind": "Node", "name": own, "uid": _node_uid(dev_cluster, own)}
    ]
    # One published before owner references (an older agent) gets its owner at the next start.
    with _as_agent(dev_cluster, other) as older:
        ForensicNodes(older).ensure(other, labels={})
        assert _owners(dev_cluster, other) == []
        ForensicNodes(older).ensure(other, labels={}, owner_uid=_node_uid(dev_cluster, other))
        assert [o["name"] for o in _owners(dev_cluster, other)] == [other]
    # The garbage collector (kube-controller-manager) deletes it once the Node is deleted.
    admin = dev_cluster.admin_client()
    apiserver.request(admin, "DELETE", f"/api/v1/nodes/{own}")
    path = f"/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes/{own}"

    def gone() -> bool:
        try:
            apiserver.request(admin, "GET", path)
        except ClusterError as exc:
            return exc.status_code == 404
        return False

    assert processes.wait_until(gone, 60, interval=0.5), "ForensicNode outlived its Node"


def test_an_agent_cannot_give_its_forensic_node_another_owner(
    dev_cluster: ClusterHandle, nodes: tuple[str, str]
) -> None:
    own, other = nodes
    with _as_agent(dev_cluster, own) as agent:
        ForensicNodes(agent).ensure(own, labels={})
        # Owned by another Node, it would go with that one (and stay when its own goes).
        stranger = {"apiVersion": "v1", "kind": "Node", "name": other}
        with pytest.raises(ClusterError, match="owned by its own Node only") as refused:
            apiserver.request(
                agent,
                "PATCH",
                f"/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes/{own}",
                {
                    "metadata": {
                        "ownerReferences": [{**stranger, "uid": _node_uid(dev_cluster, other)}]
                    }
                },
            )
        assert refused.value.status_code == 403
