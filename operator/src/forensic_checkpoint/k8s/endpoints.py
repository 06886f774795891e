"""The alert Service's one endpoint: the leader replica (``controller/leadership``) points it at
itself, so that Alertmanager and Falcosidekick reach the replica that acts, never a standby (the
Service has no selector; kube-proxy follows this EndpointSlice). The slice is owned by its
Service, as the ones Kubernetes writes are: ``helm uninstall`` deletes the Service, and the
garbage collector the slice."""

from __future__ import annotations

import logging
from typing import Any

from forensic_checkpoint.errors import NotFoundError
from forensic_checkpoint.k8s._rest import APPLY_PATCH, core_path, group_path, request_json
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint.k8s.rbac import FIELD_MANAGER

MANAGED_BY = "operator.forensic-checkpoint.dev"  # a label value: no "/"
#: The label that names the replica an EndpointSlice points at (its leader-election identity).
LEADER_LABEL = "forensic-checkpoint.dev/leader"
#: The operator's Role grants these on endpointslices in its own namespace only (deploy/rbac),
#: and ``get`` on services (the owner's uid).
RBAC_VERBS = ("get", "create", "patch")

log = logging.getLogger(__name__)


def slice_name(service: str) -> str:
    return f"{service}-leader"


class LeaderEndpoints:
    def __init__(self, api: ApiClient, namespace: str) -> None:
        self._api = api
        self.namespace = namespace

    def point(self, service: str, *, ip: str, port: int, port_name: str, leader: str) -> None:
        """Make ``ip:port`` the only endpoint of ``service`` (server-side apply: whoever led
        before is replaced)."""
        name = slice_name(service)
        body: dict[str, Any] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/service-name": service,
                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                    # A label value holds at most 63 characters: the pod's name part suffices.
                    LEADER_LABEL: leader[-63:].strip("_-."),
                },
            },
            "addressType": "IPv6" if ":" in ip else "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        }
        try:
            owner = request_json(
                self._api, "GET", core_path("services", namespace=self.namespace, name=service)
            )
        except NotFoundError:  # alerts still reach nobody: the Service is what they are sent to
            log.warning("the Service %s/%s does not exist", self.namespace, service)
        else:
            uid = owner["metadata"]["uid"]
            reference = {"apiVersion": "v1", "kind": "Service", "name": service, "uid": uid}
            body["metadata"]["ownerReferences"] = [reference]
        request_json(
            self._api,
            "PATCH",
            group_path(
                "discovery.k8s.io", "v1", "endpointslices", namespace=self.namespace, name=name
            ),
            body=body,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type=APPLY_PATCH,
        )
