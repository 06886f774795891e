"""Nodes and ForensicNodes: where a node's kubelet listens, and the ForensicNode its agent
publishes (the agent writes it, the operator and ``nodes`` commands read it)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from forensic_checkpoint.api.conditions import Condition
from forensic_checkpoint.api.forensicnode import AgentStatus, ForensicNode, ReadinessCheck
from forensic_checkpoint.errors import ConflictError, NotFoundError
from forensic_checkpoint.k8s._rest import MERGE_PATCH, core_path, custom_path, request_json
from forensic_checkpoint.k8s.client import ApiClient

_CRD = ForensicNode.crd


@dataclass(frozen=True)
class NodeFacts:
    """What the agent reads from its Node object."""

    name: str
    #: ``status.addresses`` by type (InternalIP, ExternalIP, Hostname).
    addresses: Mapping[str, str] = field(default_factory=dict)
    #: ``status.daemonEndpoints.kubeletEndpoint.Port``, when the kubelet reported one.
    kubelet_port: int | None = None
    #: ``status.nodeInfo`` (containerRuntimeVersion, kubeletVersion, ...).
    node_info: Mapping[str, str] = field(default_factory=dict)
    #: ``metadata.uid``: what owner references to the Node name.
    uid: str = ""


class Nodes:
    """The cluster's Node objects (read only)."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def get(self, name: str) -> NodeFacts | None:
        try:
            raw = request_json(self._api, "GET", core_path("nodes", name=name))
        except NotFoundError:
            return None
        return _node_facts(name, raw or {})


def _node_facts(name: str, raw: Mapping[str, Any]) -> NodeFacts:
    status = raw.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addresses = {
        str(a.get("type")): str(a.get("address"))
        for a in status.get("addresses") or []
        if a.get("address")
    }
    return NodeFacts(
        name=name,
        addresses=addresses,
        kubelet_port=port if isinstance(port, int) else None,
        node_info={str(k): str(v) for k, v in (status.get("nodeInfo") or {}).items()},
        uid=str((raw.get("metadata") or {}).get("uid") or ""),
    )


class ForensicNodes:
    """ForensicNodes (cluster scoped, named after their node)."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def get(self, name: str) -> ForensicNode | None:
        try:
            raw = request_json(self._api, "GET", custom_path(_CRD, name=name))
        except NotFoundError:
            return None
        return ForensicNode.model_validate(raw)

    def list(self, *, label_selector: str = "") -> list[ForensicNode]:
        query = {"labelSelector": label_selector} if label_selector else None
        raw = request_json(self._api, "GET", custom_path(_CRD), query=query)
        return [ForensicNode.model_validate(item) for item in (raw or {}).get("items") or []]

    def delete(self, name: str) -> None:
        """Delete it; one that is gone already counts as deleted."""
        with contextlib.suppress(NotFoundError):
            request_json(self._api, "DELETE", custom_path(_CRD, name=name))

    def ensure(self, name: str, *, labels: Mapping[str, str], owner_uid: str = "") -> None:
        """Create the ForensicNode unless it exists (another agent instance may win the race).

        With ``owner_uid`` (the Node's uid) it is owned by its Node, so the garbage collector
        deletes it with the Node; one created before that gets the owner reference added."""
        owners = [node_owner(name, owner_uid)] if owner_uid else []
        existing = self.get(name)
        if existing is None:
            metadata: dict[str, Any] = {"name": name, "labels": dict(labels)}
            if owners:
                metadata["ownerReferences"] = owners
            node = ForensicNode(metadata=metadata)
            with contextlib.suppress(ConflictError):
                request_json(self._api, "POST", custom_path(_CRD), body=node.to_kube())
            return
        current = existing.metadata.get("ownerReferences") or []
        if owners and not any(ref.get("kind") == "Node" for ref in current):
            request_json(
                self._api,
                "PATCH",
                custom_path(_CRD, name=name),
                body={"metadata": {"ownerReferences": owners}},
                content_type=MERGE_PATCH,
            )

    def set_agent(self, name: str, agent: AgentStatus) -> ForensicNode:
        """Merge ``status.agent``; the readiness fields stay as they are. Returns the object as
        stored (the agent sees there whether the operator marked it Unknown meanwhile)."""
        return self._merge_status(name, {"agent": agent.to_kube()})

    def set_conditions(
        self, name: str, conditions: Sequence[Condition], *, resource_version: str
    ) -> None:
        """Replace ``status.conditions`` if the object is still at ``resource_version`` (409
        :class:`ConflictError` otherwise: the agent wrote meanwhile, and its word wins)."""
        request_json(
            self._api,
            "PATCH",
            custom_path(_CRD, name=name, subresource="status"),
            body={
                "metadata": {"resourceVersion": resource_version},
                "status": {"conditions": [c.to_kube() for c in conditions]},
            },
            content_type=MERGE_PATCH,
        )

    def set_readiness(
        self,
        name: str,
        *,
        runtime: str,
        checks: Sequence[ReadinessCheck],
        conditions: Sequence[Condition],
    ) -> None:
        """Merge the readiness fields; ``status.agent`` stays as it is."""
        self._merge_status(
            name,
            {
                "runtime": runtime,
                "checks": [c.to_kube() for c in checks],
                "conditions": [c.to_kube() for c in conditions],
            },
        )

    def _merge_status(self, name: str, status: dict[str, Any]) -> ForensicNode:
        """JSON merge of ``status``: the keys given are replaced, the others left as they are."""
        raw = request_json(
            self._api,
            "PATCH",
            custom_path(_CRD, name=name, subresource="status"),
            body={"status": status},
            content_type=MERGE_PATCH,
        )
        return ForensicNode.model_validate(raw or {})


def node_owner(name: str, uid: str) -> dict[str, Any]:
    """The owner reference to Node ``name``: its ForensicNode goes when the Node goes. Not
    ``blockOwnerDeletion`` (that would need update rights on the Node's finalizers)."""
    return {"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}
