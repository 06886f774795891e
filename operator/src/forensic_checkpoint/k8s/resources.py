"""Typed reads and writes the operator needs beyond what kopf does itself: the target pod, the
node agent's ForensicNode, and the ForensicCheckpoint status.

Everything here is synchronous (the kubernetes client is); the controller calls it through
``asyncio.to_thread`` so the kopf event loop never waits on the network.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint, ForensicCheckpointStatus
from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.domain.targets import PodFacts, pod_facts
from forensic_checkpoint.errors import NotFoundError
from forensic_checkpoint.k8s.client import ApiClient, api_error, request_json, translated

_FCP = ForensicCheckpoint.crd
_NODE = ForensicNode.crd


class OperatorResources:
    """The operator's view of the API, bound to one client (and so to one identity)."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api
        self._custom = k8s_client.CustomObjectsApi(api)

    def get_pod(self, namespace: str, name: str) -> PodFacts | None:
        """The pod's facts, or ``None`` if it does not exist."""
        try:
            raw = request_json(self._api, "GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        except NotFoundError:
            return None
        return pod_facts(raw)

    def get_forensic_node(self, node_name: str) -> ForensicNode | None:
        try:
            raw = self._custom.get_cluster_custom_object(
                _NODE.group, _NODE.version, _NODE.plural, node_name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise api_error(exc, f"get forensicnode {node_name}") from exc
        return ForensicNode.model_validate(raw)

    def get_checkpoint(self, namespace: str, name: str) -> ForensicCheckpoint | None:
        try:
            raw = self._custom.get_namespaced_custom_object(
                _FCP.group, _FCP.version, namespace, _FCP.plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise api_error(exc, f"get forensiccheckpoint {namespace}/{name}") from exc
        return ForensicCheckpoint.model_validate(raw)

    def write_status(self, namespace: str, name: str, status: ForensicCheckpointStatus) -> None:
        """Replace the status fields the operator owns (a merge patch on ``/status``).

        Top-level fields that became unset are sent as ``null`` so the merge removes them;
        lists are replaced whole (JSON merge patch has no list merging for custom resources).
        """
        body: dict[str, Any] = status.to_kube()
        for field_name, info in ForensicCheckpointStatus.model_fields.items():
            alias = info.alias or field_name
            if alias not in body:
                body[alias] = None
        with translated(f"patch forensiccheckpoint {namespace}/{name} status"):
            self._custom.patch_namespaced_custom_object_status(
                _FCP.group, _FCP.version, namespace, _FCP.plural, name, {"status": body}
            )
