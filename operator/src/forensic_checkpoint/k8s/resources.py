"""Typed reads and writes the operator needs beyond what kopf does itself: the target pod, the
node agent's ForensicNode, and the ForensicCheckpoint status.

Everything here is synchronous (the kubernetes client is); the controller calls it through
``asyncio.to_thread`` so the kopf event loop never waits on the network.
"""

from __future__ import annotations

from typing import Any

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint, ForensicCheckpointStatus
from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.domain.targets import PodFacts, pod_facts
from forensic_checkpoint.errors import NotFoundError
from forensic_checkpoint.k8s.client import ApiClient, request_json

_FCP = ForensicCheckpoint.crd
_NODE = ForensicNode.crd


def _fcp_path(namespace: str, name: str) -> str:
    return f"/apis/{_FCP.api_version}/namespaces/{namespace}/{_FCP.plural}/{name}"


class OperatorResources:
    """The operator's view of the API, bound to one client (and so to one identity)."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def get_pod(self, namespace: str, name: str) -> PodFacts | None:
        """The pod's facts, or ``None`` if it does not exist."""
        try:
            raw = request_json(self._api, "GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        except NotFoundError:
            return None
        return pod_facts(raw)

    def get_forensic_node(self, node_name: str) -> ForensicNode | None:
        try:
            raw = request_json(
                self._api, "GET", f"/apis/{_NODE.api_version}/{_NODE.plural}/{node_name}"
            )
        except NotFoundError:
            return None
        return ForensicNode.model_validate(raw)

    def get_checkpoint(self, namespace: str, name: str) -> ForensicCheckpoint | None:
        try:
            raw = request_json(self._api, "GET", _fcp_path(namespace, name))
        except NotFoundError:
            return None
        return ForensicCheckpoint.model_validate(raw)

    def write_status(
        self,
        namespace: str,
        name: str,
        status: ForensicCheckpointStatus,
        *,
        with_custody: bool = False,
    ) -> None:
        """Replace the status fields the operator owns (a merge patch on ``/status``).

        Top-level fields that became unset are sent as ``null`` so the merge removes them;
        lists are replaced whole (JSON merge patch has no list merging for custom resources).
        ``custody`` is sent only ``with_custody`` (the caller appended to it), and then whole:
        the CRD's CEL rules refuse a list that lost or changed an entry, so a stale copy fails
        the patch (422) instead of rewriting the chain.
        """
        body: dict[str, Any] = status.to_kube()
        for field_name, info in ForensicCheckpointStatus.model_fields.items():
            alias = info.alias or field_name
            if alias not in body:
                body[alias] = None
        if not with_custody:
            body.pop("custody", None)
        request_json(
            self._api,
            "PATCH",
            f"{_fcp_path(namespace, name)}/status",
            body={"status": body},
            content_type="application/merge-patch+json",
        )
