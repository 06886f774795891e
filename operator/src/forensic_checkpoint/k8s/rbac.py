"""The per-node RBAC of the agents' kubelet client certificates: for each node, a ClusterRole
that may create ``nodes/checkpoint`` on that node alone, bound to that node's agent's kubelet
user (:mod:`forensic_checkpoint.agent_identity`), both owned by the Node so that the garbage
collector removes them with it.

The operator writes them with server-side apply, before it signs a certificate for the node; the
chart's ``<fullname>-operator-grants`` admission policy lets it write nothing but this shape."""

from __future__ import annotations

import contextlib
from typing import Any

from forensic_checkpoint.agent_identity import kubelet_client_grant_name, kubelet_client_user
from forensic_checkpoint.errors import NotFoundError
from forensic_checkpoint.k8s._rest import APPLY_PATCH, group_path, request_json
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint.k8s.nodes import NodeFacts

_GROUP, _VERSION = "rbac.authorization.k8s.io", "v1"
_PLURALS = ("clusterrolebindings", "clusterroles")
FIELD_MANAGER = "forensic-checkpoint-operator"
#: On both objects, so that an administrator can list what the operator granted.
GRANT_LABEL = "forensic-checkpoint.dev/kubelet-client-node"


class KubeletClientGrants:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def ensure(self, node: NodeFacts) -> None:
        """Grant ``node``'s agent user ``create nodes/checkpoint`` on ``node`` (idempotent)."""
        name = kubelet_client_grant_name(node.name)
        metadata: dict[str, Any] = {
            "name": name,
            "labels": {GRANT_LABEL: node.name},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node.uid}
            ],
        }
        role = {
            "apiVersion": f"{_GROUP}/{_VERSION}",
            "kind": "ClusterRole",
            "metadata": metadata,
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["nodes/checkpoint"],
                    "resourceNames": [node.name],
                    "verbs": ["create"],
                }
            ],
        }
        binding = {
            "apiVersion": f"{_GROUP}/{_VERSION}",
            "kind": "ClusterRoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": _GROUP, "kind": "ClusterRole", "name": name},
            "subjects": [
                {"apiGroup": _GROUP, "kind": "User", "name": kubelet_client_user(node.name)}
            ],
        }
        for plural, body in (("clusterroles", role), ("clusterrolebindings", binding)):
            request_json(
                self._api,
                "PATCH",
                group_path(_GROUP, _VERSION, plural, name=name),
                body=body,
                query={"fieldManager": FIELD_MANAGER, "force": "true"},
                content_type=APPLY_PATCH,
            )

    def granted(self) -> list[tuple[str, str]]:
        """(plural, name) of every role and binding written for a node (by :data:`GRANT_LABEL`)."""
        found: list[tuple[str, str]] = []
        for plural in _PLURALS:
            listing = request_json(
                self._api,
                "GET",
                group_path(_GROUP, _VERSION, plural),
                query={"labelSelector": GRANT_LABEL},
            )
            found += [
                (plural, str(item["metadata"]["name"]))
                for item in (listing or {}).get("items") or []
            ]
        return found

    def delete(self, plural: str, name: str) -> None:
        """Delete one of :meth:`granted`; one that is gone already counts as deleted."""
        with contextlib.suppress(NotFoundError):
            request_json(self._api, "DELETE", group_path(_GROUP, _VERSION, plural, name=name))
