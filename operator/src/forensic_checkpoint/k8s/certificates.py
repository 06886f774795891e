"""Certificates through the API server: CertificateSigningRequests (the kubectl plugin's kubelet
client certificate; the agents' serving certificates, which the operator approves and signs),
and the ``kubernetes.io/tls`` Secret an issued certificate is kept in."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from forensic_checkpoint.domain.identity.csr_facts import CsrSpec
from forensic_checkpoint.errors import ClusterError, NotFoundError
from forensic_checkpoint.k8s._rest import (
    APPLY_PATCH,
    EventStream,
    core_path,
    group_path,
    request_json,
)
from forensic_checkpoint.k8s.client import ApiClient

_GROUP, _VERSION, _PLURAL = "certificates.k8s.io", "v1", "certificatesigningrequests"
#: Seconds the API server keeps one watch request open; the next resumes where it ended.
WATCH_SECONDS = 240
#: What :meth:`CsrWatch.changes` yields after each listing: changes before it may be unseen.
LISTED = "LISTED"


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


@dataclass(frozen=True)
class CsrChange:
    """One change to a signer's requests: ``ADDED``, ``MODIFIED`` or ``DELETED`` with the
    request as it now is, or :data:`LISTED` (no state) after a listing."""

    kind: str
    state: CsrState | None = None


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

    def watch(self, signer: str) -> CsrWatch:
        """The changes to ``signer``'s requests, for a thread to block on (:class:`CsrWatch`)."""
        return CsrWatch(self._api, signer)

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


class CsrWatch:
    """The changes to one signer's requests as a blocking stream: a listing (for its
    resourceVersion), then watch requests (``allowWatchBookmarks``, ``timeoutSeconds``) each
    resuming from the last version seen, a new listing when that version is too old (410 Gone).

    ``for change in watch.changes(): ...`` in a thread of its own; :meth:`close`, from any
    thread, ends it at once.
    """

    def __init__(self, api: ApiClient, signer: str, *, timeout_seconds: int = WATCH_SECONDS):
        self._api = api
        self._selector = f"spec.signerName={signer}"
        self._timeout = timeout_seconds
        self._stream = EventStream(api)

    def close(self) -> None:
        self._stream.close()

    def changes(self, since: str | None = None) -> Iterator[CsrChange]:
        """Forever, until :meth:`close`: :data:`LISTED` after each listing, then each change.
        ``since``: a resourceVersion to start from instead of a listing's. Raises
        :class:`ClusterError` on a failure other than an expired version (the caller waits and
        calls again: it lists anew)."""
        path = group_path(_GROUP, _VERSION, _PLURAL)
        version = since
        while not self._stream.closed:
            if version is None:
                # One item is enough: the list's resourceVersion is what the watch needs.
                query = {"fieldSelector": self._selector, "limit": "1"}
                listing = request_json(self._api, "GET", path, query=query) or {}
                version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
                yield CsrChange(LISTED)
            query = {
                "fieldSelector": self._selector,
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(self._timeout),
            }
            try:
                for event in self._stream.events(path, query, read_timeout=self._timeout + 30):
                    kind, raw = str(event.get("type", "")), event.get("object") or {}
                    if kind == "ERROR":
                        raise ClusterError(
                            f"WATCH {path}: {raw.get('code')} {raw.get('message', '')}",
                            status_code=raw.get("code"),
                        )
                    version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        yield CsrChange(kind, _state(raw))
            except ClusterError as exc:
                if exc.status_code != 410:
                    raise
                version = None  # too old: what happened since is known only by listing


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
