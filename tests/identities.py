"""Clients that act on the dev cluster as someone other than its administrator: the operator's
ServiceAccount with exactly the RBAC of deploy/rbac, or a plain user by client certificate.
Attack tests use them, so the API server's authorizer and admission decide as in production."""

from __future__ import annotations

from forensic_checkpoint.k8s.client import ApiClient, from_client_certificate, from_token
from forensic_checkpoint_dev.cluster import access
from forensic_checkpoint_dev.cluster.testing import ClusterHandle
from forensic_checkpoint_dev.manifests import apply_manifests
from forensic_checkpoint_dev.stack import OPERATOR_SA, RBAC_DIR, SYSTEM_NAMESPACE

#: The operator's (and the alert receiver's) user name with deploy/rbac.
OPERATOR_USER = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{OPERATOR_SA}"


def operator_client(handle: ClusterHandle) -> ApiClient:
    """A client with the operator's identity, after applying deploy/rbac/operator.yaml."""
    admin = handle.admin_client()
    apply_manifests(admin, [RBAC_DIR / "operator.yaml"])
    token = access.request_token(admin, SYSTEM_NAMESPACE, OPERATOR_SA)
    return from_token(handle.server, token, ca_file=handle.ca_file)


def user_client(handle: ClusterHandle, user: str) -> ApiClient:
    """A client for ``user`` (a client certificate from the cluster CA; local cluster only)."""
    pair = handle.issue_client_certificate(user)
    return from_client_certificate(handle.server, pair.cert, pair.key, ca_file=handle.ca_file)
