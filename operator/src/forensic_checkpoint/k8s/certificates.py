"""Client certificates through the API server: CertificateSigningRequests, and the
``kubernetes.io/tls`` Secret the issued certificate is kept in."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from forensic_checkpoint.k8s._rest import APPLY_PATCH, core_path, group_path, request_json
from forensic_checkpoint.k8s.client import ApiClient

_GROUP, _VERSION, _PLURAL = "certificates.k8s.io", "v1", "certificatesigningrequests"


@dataclass(frozen=True)
class CsrOutcome:
    """Where a CSR stands: the issued certificate (PEM), or why it will not be issued."""

    certificate: bytes | None = None
    #: ``"Denied: <message>"`` or ``"Failed: <message>"`` once a signer or approver refused.
    refusal: str | None = None


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
        path = group_path(_GROUP, _VERSION, _PLURAL, name=name)
        csr = request_json(self._api, "GET", path)
        csr.setdefault("status", {})["conditions"] = [
            {"type": "Approved", "status": "True", "reason": reason, "message": message}
        ]
        request_json(self._api, "PUT", f"{path}/approval", body=csr)

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
        request_json(self._api, "DELETE", group_path(_GROUP, _VERSION, _PLURAL, name=name))


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
