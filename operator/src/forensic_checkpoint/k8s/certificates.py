"""Certificates through the API server: CertificateSigningRequests (the kubectl plugin's kubelet
client certificate; the agents' serving certificates, which the operator approves and signs),
and the ``kubernetes.io/tls`` Secret an issued certificate is kept in."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from forensic_checkpoint.domain.identity.csr_facts import CsrSpec
from forensic_checkpoint.errors import NotFoundError
from forensic_checkpoint.k8s._rest import APPLY_PATCH, core_path, group_path, request_json
from forensic_checkpoint.k8s.client import ApiClient

_GROUP, _VERSION, _PLURAL = "certificates.k8s.io", "v1", "certificatesigningrequests"


@dataclass(frozen=True)
class CsrOutcome:
    """Where a CSR stands: the issued certificate (PEM), or why it will not be issued."""

    certificate: bytes | None = None
    #: ``"Denied: <message>"`` or ``"Failed: <message>"`` once a signer or approver refused.
    refusal: str | None = None


@dataclass(frozen=True)
class CsrState:
    """A CertificateSigningRequest as a signer sees it: what it asks, and how far it got."""

    spec: CsrSpec
    #: ``"Approved"``, ``"Denied"`` or ``""`` (nobody decided yet).
    decision: str = ""
    failed: bool = False
    issued: bool = False


class CertificateSigningRequests:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def create(
        self,
        name: str,
        request_pem: bytes,
        *,
        signer: str,
        usages: Sequence[str],
        expiration_seconds: int,
        labels: Mapping[str, str],
    ) -> None:
        body = {
            "apiVersion": f"{_GROUP}/{_VERSION}",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "request": base64.b64encode(request_pem).decode(),
                "signerName": signer,
                "usages": list(usages),
                "expirationSeconds": expiration_seconds,
            },
        }
        request_json(self._api, "POST", group_path(_GROUP, _VERSION, _PLURAL), body=body)

    def approve(self, name: str, *, reason: str, message: str) -> None:
        """Approve it (needs the ``approve`` verb on its signer)."""
        self._decide(name, "Approved", reason=reason, message=message)

    def deny(self, name: str, *, reason: str, message: str) -> None:
        """Deny it (needs the ``approve`` verb on its signer); the requester sees ``message``."""
        self._decide(name, "Denied", reason=reason, message=message)

    def _decide(self, name: str, decision: str, *, reason: str, message: str) -> None:
        path = group_path(_GROUP, _VERSION, _PLURAL, name=name)
        csr = request_json(self._api, "GET", path)
        csr.setdefault("status", {})["conditions"] = [
            {"type": decision, "status": "True", "reason": reason, "message": message[:1000]}
        ]
        request_json(self._api, "PUT", f"{path}/approval", body=csr)

    def for_signer(self, signer: str) -> list[CsrState]:
        """Every request for ``signer`` (a field selector: other signers' are not listed)."""
        listing = request_json(
            self._api,
            "GET",
            group_path(_GROUP, _VERSION, _PLURAL),
            query={"fieldSelector": f"spec.signerName={signer}"},
        )
        return [_state(item) for item in (listing or {}).get("items") or []]

    def issue(self, name: str, certificate_pem: bytes) -> None:
        """Write the signed certificate (needs the ``sign`` verb on the signer)."""
        self._update_status(name, certificate=base64.b64encode(certificate_pem).decode())

    def fail(self, name: str, *, reason: str, message: str) -> None:
        """The signer cannot sign an approved request: a ``Failed`` condition says why."""
        condition = {"type": "Failed", "status": "True", "reason": reason, "message": message}
        self._update_status(name, condition=condition)

    def _update_status(
        self, name: str, *, certificate: str | None = None, condition: Any = None
    ) -> None:
        path = group_path(_GROUP, _VERSION, _PLURAL, name=name)
        csr = request_json(self._api, "GET", path)
        status = csr.setdefault("status", {})
        if certificate is not None:
            status["certificate"] = certificate
        if condition is not None:
            status.setdefault("conditions", []).append(condition)
        request_json(self._api, "PUT", f"{path}/status", body=csr)

    def outcome(self, name: str) -> CsrOutcome:
        path = group_path(_GROUP, _VERSION, _PLURAL, name=name)
        status = (request_json(self._api, "GET", path) or {}).get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") in ("Denied", "Failed") and cond.get("status") == "True":
                return CsrOutcome(refusal=f"{cond['type']}: {cond.get('message', '')}")
        if status.get("certificate"):
            return CsrOutcome(certificate=base64.b64decode(status["certificate"]))
        return CsrOutcome()

    def delete(self, name: str) -> None:
        """Delete it; one that is gone already counts as deleted."""
        with contextlib.suppress(NotFoundError):
            request_json(self._api, "DELETE", group_path(_GROUP, _VERSION, _PLURAL, name=name))


def _state(raw: Mapping[str, Any]) -> CsrState:
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    true = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
    try:
        request = base64.b64decode(spec.get("request") or "")
    except ValueError:
        request = b""
    expiration = spec.get("expirationSeconds")
    return CsrState(
        spec=CsrSpec(
            name=str((raw.get("metadata") or {}).get("name", "")),
            signer_name=str(spec.get("signerName", "")),
            username=str(spec.get("username", "")),
            extra={
                str(k): tuple(str(x) for x in v or ()) for k, v in (spec.get("extra") or {}).items()
            },
            usages=tuple(str(u) for u in spec.get("usages") or ()),
            expiration_seconds=expiration if isinstance(expiration, int) else None,
            request=request,
        ),
        decision="Denied" if "Denied" in true else "Approved" if "Approved" in true else "",
        failed="Failed" in true,
        issued=bool(status.get("certificate")),
    )


class TlsSecrets:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def apply(
        self,
        namespace: str,
        name: str,
        cert_pem: bytes,
        key_pem: bytes,
        *,
        labels: Mapping[str, str],
        field_manager: str,
    ) -> None:
        """Create or replace the ``kubernetes.io/tls`` Secret (server-side apply)."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "data": {
                "tls.crt": base64.b64encode(cert_pem).decode(),
                "tls.key": base64.b64encode(key_pem).decode(),
            },
        }
        request_json(
            self._api,
            "PATCH",
            core_path("secrets", namespace=namespace, name=name),
            body=body,
            query={"fieldManager": field_manager, "force": "true"},
            content_type=APPLY_PATCH,
        )
