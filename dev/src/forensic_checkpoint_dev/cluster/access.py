"""Identities and permissions on a cluster: namespaces, ServiceAccounts, tokens, RBAC, CSRs.

Thin wrappers over the ``kubernetes`` client's typed APIs that tests and the demo repeat; each
is idempotent where the API allows (``AlreadyExists`` counts as done).
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from kubernetes import client as k8s

from forensic_checkpoint.errors import ClusterError, ConflictError, NotFoundError
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint_dev.apiserver import call

CHECKPOINT_RULE = {"apiGroups": [""], "resources": ["nodes/checkpoint"], "verbs": ["create"]}


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def group(name: str) -> dict[str, str]:
    return {"kind": "Group", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def service_account(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def _create(action: str, create: Any, *args: Any) -> None:
    with contextlib.suppress(ConflictError):
        call(action, create, *args)


def ensure_namespace(api: ApiClient, name: str, labels: dict[str, str] | None = None) -> None:
    """The namespace and its ``default`` ServiceAccount (created here rather than waiting for
    the controller manager, because pod admission needs it at once)."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if labels:
        body["metadata"] = {"name": name, "labels": labels}
    _create(f"create namespace {name}", k8s.CoreV1Api(api).create_namespace, body)
    create_service_account(api, name, "default")


def delete_namespace(api: ApiClient, name: str) -> None:
    with contextlib.suppress(ClusterError):
        call(f"delete namespace {name}", k8s.CoreV1Api(api).delete_namespace, name)


def namespace_exists(api: ApiClient, name: str) -> bool:
    try:
        call(f"read namespace {name}", k8s.CoreV1Api(api).read_namespace, name)
    except NotFoundError:
        return False
    return True


def create_service_account(api: ApiClient, namespace: str, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
    create = k8s.CoreV1Api(api).create_namespaced_service_account
    _create(f"create serviceaccount {namespace}/{name}", create, namespace, body)


def request_token(
    api: ApiClient,
    namespace: str,
    name: str,
    *,
    audiences: Sequence[str] = (),
    expiration_seconds: int = 3600,
    node: str | None = None,
) -> str:
    """A bound ServiceAccount token from the TokenRequest API (what a projected volume holds).

    With ``node`` the token is bound to that Node object, so the API server adds the node claim
    (``authentication.kubernetes.io/node-name`` in the user's extra), as it does for a
    DaemonSet pod's projected token on that node.
    """
    spec: dict[str, Any] = {
        "audiences": list(audiences) or None,
        "expirationSeconds": expiration_seconds,
    }
    if node is not None:
        uid = call(f"get node {node}", k8s.CoreV1Api(api).read_node, node)["metadata"]["uid"]
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    result = call(
        f"create token for serviceaccount {namespace}/{name}",
        k8s.CoreV1Api(api).create_namespaced_service_account_token,
        name,
        namespace,
        body,
    )
    return str(result["status"]["token"])


def create_cluster_role(api: ApiClient, name: str, rules: Sequence[dict[str, Any]]) -> None:
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": list(rules),
    }
    _create(f"create clusterrole {name}", k8s.RbacAuthorizationV1Api(api).create_cluster_role, body)


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
    create = k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding
    _create(f"create clusterrolebinding {name}", create, body)


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
    csrs = k8s.CertificatesV1Api(api)
    call(f"create CSR {name}", csrs.create_certificate_signing_request, body)
    csr = call(f"read CSR {name}", csrs.read_certificate_signing_request, name)
    csr.setdefault("status", {})["conditions"] = [
        {
            "type": "Approved",
            "status": "True",
            "reason": "DevClusterApproved",
            "message": "approved by the forensic-checkpoint dev cluster",
        }
    ]
    call(f"approve CSR {name}", csrs.replace_certificate_signing_request_approval, name, csr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        read = call(f"read CSR {name}", csrs.read_certificate_signing_request, name)
        issued = read.get("status", {}).get("certificate")
        if issued:
            return base64.b64decode(issued)
        time.sleep(0.2)
    raise ClusterError(f"CSR {name} approved but not signed within {timeout:.0f} s")
