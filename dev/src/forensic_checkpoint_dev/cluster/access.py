"""Identities and permissions on a cluster: namespaces, ServiceAccounts, tokens, RBAC, CSRs.

Thin wrappers over REST calls (through ``k8s.client.request_json``) that tests and the demo
repeat; each is idempotent where the API allows (``AlreadyExists`` counts as done).
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from forensic_checkpoint.errors import ClusterError, ConflictError
from forensic_checkpoint.k8s.client import ApiClient, request_json

RBAC = "/apis/rbac.authorization.k8s.io/v1"
CHECKPOINT_RULE = {"apiGroups": [""], "resources": ["nodes/checkpoint"], "verbs": ["create"]}


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def group(name: str) -> dict[str, str]:
    return {"kind": "Group", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def service_account(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def _create(api: ApiClient, path: str, body: dict[str, Any]) -> None:
    with contextlib.suppress(ConflictError):
        request_json(api, "POST", path, body=body)


def ensure_namespace(api: ApiClient, name: str, labels: dict[str, str] | None = None) -> None:
    """The namespace and its ``default`` ServiceAccount (created here rather than waiting for
    the controller manager, because pod admission needs it at once)."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if labels:
        body["metadata"] = {"name": name, "labels": labels}
    _create(api, "/api/v1/namespaces", body)
    create_service_account(api, name, "default")


def delete_namespace(api: ApiClient, name: str) -> None:
    with contextlib.suppress(ClusterError):
        request_json(api, "DELETE", f"/api/v1/namespaces/{name}")


def create_service_account(api: ApiClient, namespace: str, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
    _create(api, f"/api/v1/namespaces/{namespace}/serviceaccounts", body)


def request_token(
    api: ApiClient,
    namespace: str,
    name: str,
    *,
    audiences: Sequence[str] = (),
    expiration_seconds: int = 3600,
) -> str:
    """A bound ServiceAccount token from the TokenRequest API (what a projected volume holds)."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": list(audiences) or None, "expirationSeconds": expiration_seconds},
    }
    result = request_json(
        api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body=body
    )
    return str(result["status"]["token"])


def create_cluster_role(api: ApiClient, name: str, rules: Sequence[dict[str, Any]]) -> None:
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": list(rules),
    }
    _create(api, f"{RBAC}/clusterroles", body)


def bind_cluster_role(
    api: ApiClient, name: str, role: str, subjects: Sequence[dict[str, str]]
) -> None:
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": list(subjects),
    }
    _create(api, f"{RBAC}/clusterrolebindings", body)


def grant_node_checkpoint(api: ApiClient, name: str, subjects: Sequence[dict[str, str]]) -> None:
    """ClusterRole + binding ``name`` allowing ``create nodes/checkpoint`` (all nodes)."""
    create_cluster_role(api, name, [CHECKPOINT_RULE])
    bind_cluster_role(api, name, name, subjects)


def sign_with_csr(
    api: ApiClient,
    name: str,
    csr_pem: bytes,
    *,
    signer: str = "kubernetes.io/kube-apiserver-client",
    usages: Sequence[str] = ("digital signature", "client auth"),
    timeout: float = 30.0,
) -> bytes:
    """Submit a CertificateSigningRequest, approve it, and wait for the controller manager's
    signer to issue the certificate (PEM). Needs the dev cluster's kube-controller-manager."""
    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "signerName": signer,
            "usages": list(usages),
            "expirationSeconds": 3600,
        },
    }
    path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
    request_json(api, "POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", body=body)
    csr = request_json(api, "GET", path)
    csr.setdefault("status", {})["conditions"] = [
        {
            "type": "Approved",
            "status": "True",
            "reason": "DevClusterApproved",
            "message": "approved by the forensic-checkpoint dev cluster",
        }
    ]
    request_json(api, "PUT", f"{path}/approval", body=csr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        issued = request_json(api, "GET", path).get("status", {}).get("certificate")
        if issued:
            return base64.b64decode(issued)
        time.sleep(0.2)
    raise ClusterError(f"CSR {name} approved but not signed within {timeout:.0f} s")
