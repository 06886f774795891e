"""coordination.k8s.io/v1 Leases: the operator's leader election (``controller/leadership``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from forensic_checkpoint.domain.leadership.lease import LeaseRecord
from forensic_checkpoint.errors import NotFoundError
from forensic_checkpoint.k8s._rest import group_path, request_json
from forensic_checkpoint.k8s.client import ApiClient

#: The operator's Role grants these on leases in its own namespace only (deploy/rbac).
RBAC_VERBS = ("get", "create", "update")


class Leases:
    """One namespace's Leases; ``update`` fails with ``ConflictError`` when the Lease changed
    since it was read (another replica won the race)."""

    def __init__(self, api: ApiClient, namespace: str, *, timeout: float = 10.0) -> None:
        """``timeout``: of each request (shorter than the renew deadline)."""
        self._api = api
        self.namespace = namespace
        self._timeout = timeout

    def _path(self, name: str = "") -> str:
        return group_path(
            "coordination.k8s.io", "v1", "leases", namespace=self.namespace, name=name
        )

    def get(self, name: str) -> LeaseRecord | None:
        try:
            raw = request_json(self._api, "GET", self._path(name), timeout=self._timeout)
        except NotFoundError:
            return None
        return _record(raw or {})

    def create(self, name: str, record: LeaseRecord) -> LeaseRecord:
        return self._write("POST", self._path(), name, record)

    def update(self, name: str, record: LeaseRecord) -> LeaseRecord:
        return self._write("PUT", self._path(name), name, record)

    def _write(self, method: str, path: str, name: str, record: LeaseRecord) -> LeaseRecord:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **_body(name, record)}
        return _record(request_json(self._api, method, path, body=body, timeout=self._timeout))


def _micro(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: Any) -> datetime | None:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None


def _body(name: str, record: LeaseRecord) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if record.resource_version:
        metadata["resourceVersion"] = record.resource_version
    spec = {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.lease_duration_seconds,
        "acquireTime": _micro(record.acquire_time),
        "renewTime": _micro(record.renew_time),
        "leaseTransitions": record.transitions,
    }
    return {"metadata": metadata, "spec": spec}


def _record(raw: dict[str, Any]) -> LeaseRecord:
    spec = raw.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=_parse(spec.get("acquireTime")),
        renew_time=_parse(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=(raw.get("metadata") or {}).get("resourceVersion"),
    )
