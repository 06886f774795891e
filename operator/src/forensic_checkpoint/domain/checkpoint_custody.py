"""The operator's entries in a ForensicCheckpoint's chain of custody (pure: no I/O, no clock).

The operator appends ``Requested`` on the first pass and one ``Captured`` per container once its
agent reports the archive; existing entries are never touched (the CRD rejects that anyway). The
chain's subject is the CR's uid, so :func:`domain.custody.verify_chain` checks it with that.

**Who requested it.** Kubernetes does not record the creating user in the object, and kopf gets
no admission request, so the operator cannot *know* it. In order of trust:

1. ``spec.reason.alert``: the alert receiver created it (actor ``Alert``,
   ``<source>/<fingerprint>``).
2. The annotation :data:`REQUESTED_BY_ANNOTATION`, set by the creating client (for example the
   ``kubectl forensic`` plugin). It is a claim by whoever may create ForensicCheckpoints.
3. ``metadata.managedFields[0].manager``: the *program* that created the object
   (``kubectl-create``, ...), recorded as a hint, not a user.

Each ``Requested`` entry's ``message`` says which source named the actor. The authenticated user
is only in the API server's audit log (or an admission webhook, which this project does not run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from forensic_checkpoint.api.base import GROUP
from forensic_checkpoint.api.custody import (
    Actor,
    ActorKind,
    CustodyAction,
    CustodyEntry,
    KubeletResponse,
)
from forensic_checkpoint.api.forensiccheckpoint import (
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.domain import custody

REQUESTED_BY_ANNOTATION = f"{GROUP}/requested-by"
#: Where the Requested entry's actor came from (its ``reason``).
FROM_ALERT = "AlertReference"
FROM_ANNOTATION = "RequestedByAnnotation"
FROM_FIELD_MANAGER = "FieldManagerHint"
UNKNOWN_REQUESTER = "unknown"


def requester(metadata: Mapping[str, Any], spec: ForensicCheckpointSpec) -> tuple[Actor, str, str]:
    """The actor of the ``Requested`` entry, the source that named it, and a note on its trust."""
    alert = spec.reason.alert if spec.reason is not None else None
    if alert is not None:
        name = f"{alert.source}/{alert.fingerprint or alert.name}"
        note = f"alert {alert.name!r} via policy {alert.policy or '?'} (spec.reason.alert)"
        return Actor(kind=ActorKind.ALERT, name=name[:512]), FROM_ALERT, note
    claimed = str((metadata.get("annotations") or {}).get(REQUESTED_BY_ANNOTATION, "")).strip()
    if claimed:
        kind = (
            ActorKind.SERVICE_ACCOUNT
            if claimed.startswith("system:serviceaccount:")
            else ActorKind.USER
        )
        note = f"named by annotation {REQUESTED_BY_ANNOTATION}, not verified by the API server"
        return Actor(kind=kind, name=claimed[:512]), FROM_ANNOTATION, note
    managed: Sequence[Mapping[str, Any]] = metadata.get("managedFields") or []
    manager = str(managed[0].get("manager", "")) if managed else ""
    note = (
        f"creating user unknown; created with field manager {manager!r} (a program, not a user)"
        if manager
        else "creating user unknown; no field manager recorded"
    )
    return Actor(kind=ActorKind.USER, name=UNKNOWN_REQUESTER), FROM_FIELD_MANAGER, note


def _append(
    chain: Sequence[CustodyEntry], subject: str, *, container: str | None, **fields: Any
) -> list[CustodyEntry]:
    """``custody.append`` plus the entry's container (set before hashing, so it is covered)."""
    entries = custody.append(chain, subject, **fields)
    if container is None:
        return entries
    last = entries[-1].model_copy(update={"container": container})
    return [*entries[:-1], last.model_copy(update={"hash": custody.entry_hash(last)})]


def record_request(
    status: ForensicCheckpointStatus,
    *,
    subject: str,
    metadata: Mapping[str, Any],
    spec: ForensicCheckpointSpec,
    at: datetime,
) -> ForensicCheckpointStatus:
    """``status`` with the chain's first entry, ``Requested``, unless the chain has begun."""
    if status.custody:
        return status
    actor, source, note = requester(metadata, spec)
    new = status.model_copy(deep=True)
    new.custody = _append(
        [],
        subject,
        container=None,
        action=CustodyAction.REQUESTED,
        at=at,
        actor=actor,
        reason=source,
        message=note[:1024],
    )
    return new


def record_captures(status: ForensicCheckpointStatus, *, subject: str) -> ForensicCheckpointStatus:
    """``status`` with a ``Captured`` entry for each container whose archive the agent reported
    and the chain does not name yet (so a repeated pass adds nothing)."""
    recorded = {
        e.container for e in status.custody if e.action is CustodyAction.CAPTURED and e.container
    }
    chain: list[CustodyEntry] = list(status.custody)
    for container in status.containers:
        archive = container.archive
        if archive is None or container.name in recorded:
            continue
        # The archive's own time (the agent's clock), unless that would go back in the chain.
        when = max(archive.captured_at, chain[-1].at) if chain else archive.captured_at
        chain = _append(
            chain,
            subject,
            container=container.name,
            action=CustodyAction.CAPTURED,
            at=when,
            actor=Actor(kind=ActorKind.AGENT, name=f"forensic-checkpoint-agent@{status.node_name}"),
            node=status.node_name or None,
            kubelet=KubeletResponse(
                status_code=container.kubelet_status_code or 200, message=archive.path[:1024]
            ),
            sha256=archive.sha256,
            size_bytes=archive.size_bytes,
        )
    if len(chain) == len(status.custody):
        return status
    new = status.model_copy(deep=True)
    new.custody = chain
    return new
