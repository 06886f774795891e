"""The operator's entries in a ForensicCheckpoint's chain of custody (pure: no I/O, no clock).

The operator appends ``Requested`` on the first pass, then each custody fact its agents report
(``Captured``, ``Exported``, ``Verified``, ``Deleted``: ``CaptureStatus.custodyEvents``), and a
``Requested`` about one container (reason ``AgentStateLost``) when an agent that lost the job is
asked again, so the CR holds one linear chain with one writer; existing entries are never
touched (the CRD rejects that anyway). The chain's subject is the CR's uid, so
:func:`domain.evidence.custody.verify_chain` checks it with that.

**Who requested it.** Kubernetes does not record the creating user in the object, and kopf gets
no admission request, so the operator reads it from what the API server let through. The chart's
admission policy (``templates/admission-alert-provenance.yaml``) refuses ``spec.reason.alert``
from anyone but the alert receiver's identity, and an annotation :data:`REQUESTED_BY_ANNOTATION`
that does not name the creating user (or that changes later). In order of trust:

1. ``spec.reason.alert`` *and* :data:`REQUESTED_BY_ANNOTATION` naming the receiver (the receiver
   sets both; it runs with the operator's identity): actor ``Alert``,
   ``<source>/<fingerprint>``. An alert reference from anyone else is not alert provenance: the
   entry names that creator as below and says the reference was ignored.
2. The annotation :data:`REQUESTED_BY_ANNOTATION`: the creating user, as the admission policy
   checked it (without the policy it is only a claim by whoever may create the object).
3. ``metadata.managedFields[0].manager``: the *program* that created the object
   (``kubectl-create``, ...), recorded as a hint, not a user.

Each ``Requested`` entry's ``message`` says which source named the actor. Without the chart's
admission policy, the authenticated user is only in the API server's audit log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from forensic_checkpoint.api.agent import AGENT_ACTIONS, CustodyFact
from forensic_checkpoint.api.base import GROUP
from forensic_checkpoint.api.custody import (
    Actor,
    ActorKind,
    CustodyAction,
    CustodyEntry,
)
from forensic_checkpoint.api.forensiccheckpoint import (
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.domain.evidence import custody

REQUESTED_BY_ANNOTATION = f"{GROUP}/requested-by"
#: Where the Requested entry's actor came from (its ``reason``).
FROM_ALERT = "AlertReference"
FROM_ANNOTATION = "RequestedByAnnotation"
FROM_FIELD_MANAGER = "FieldManagerHint"
UNKNOWN_REQUESTER = "unknown"
#: The ``reason`` of a re-capture's ``Requested`` entry: the agent lost the job's state.
AGENT_STATE_LOST = "AgentStateLost"
#: The actor of the operator's own entries.
OPERATOR = Actor(kind=ActorKind.OPERATOR, name="operator")


def requester(
    metadata: Mapping[str, Any], spec: ForensicCheckpointSpec, receiver: str = ""
) -> tuple[Actor, str, str]:
    """The actor of the ``Requested`` entry, the source that named it, and a note on its trust.
    ``receiver`` is the alert receiver's user name; without it no alert provenance is recorded.
    """
    alert = spec.reason.alert if spec.reason is not None else None
    claimed = str((metadata.get("annotations") or {}).get(REQUESTED_BY_ANNOTATION, "")).strip()
    ignored = ""
    if alert is not None:
        if receiver and claimed == receiver:
            name = f"{alert.source}/{alert.fingerprint or alert.name}"
            note = (
                f"alert {alert.name!r} via policy {alert.policy or '?'} (spec.reason.alert), "
                f"created by the alert receiver {receiver}"
            )
            return Actor(kind=ActorKind.ALERT, name=name[:512]), FROM_ALERT, note
        ignored = "spec.reason.alert ignored: not created by the alert receiver; "
    if claimed:
        kind = (
            ActorKind.SERVICE_ACCOUNT
            if claimed.startswith("system:serviceaccount:")
            else ActorKind.USER
        )
        note = (
            f"{ignored}named by annotation {REQUESTED_BY_ANNOTATION}, which the chart's "
            "admission policy checks against the creating user"
        )
        return Actor(kind=kind, name=claimed[:512]), FROM_ANNOTATION, note
    managed: Sequence[Mapping[str, Any]] = metadata.get("managedFields") or []
    manager = str(managed[0].get("manager", "")) if managed else ""
    note = (
        f"creating user unknown; created with field manager {manager!r} (a program, not a user)"
        if manager
        else "creating user unknown; no field manager recorded"
    )
    return Actor(kind=ActorKind.USER, name=UNKNOWN_REQUESTER), FROM_FIELD_MANAGER, ignored + note


def record_request(
    status: ForensicCheckpointStatus,
    *,
    subject: str,
    metadata: Mapping[str, Any],
    spec: ForensicCheckpointSpec,
    at: datetime,
    receiver: str = "",
) -> ForensicCheckpointStatus:
    """``status`` with the chain's first entry, ``Requested``, unless the chain has begun;
    ``receiver`` as for :func:`requester`."""
    if status.custody:
        return status
    actor, source, note = requester(metadata, spec, receiver)
    new = status.model_copy(deep=True)
    new.custody = custody.append(
        [],
        subject,
        action=CustodyAction.REQUESTED,
        at=at,
        actor=actor,
        reason=source,
        message=note[:1024],
    )
    return new


def record_recaptures(
    status: ForensicCheckpointStatus, *, subject: str, at: datetime
) -> ForensicCheckpointStatus:
    """``status`` with one ``Requested`` entry (reason :data:`AGENT_STATE_LOST`, about the
    container) for each re-capture of ``ContainerStatus.recaptures`` the chain does not hold yet.

    The agent lost the job (its state), so the operator asked again with the same key and the
    kubelet is called again: the entry makes that second call visible, and it opens the new
    job, whose facts the agent numbers from 0 again (:func:`recorded_facts`). Entered at the
    head's time when ``at`` is earlier, as for the agent's facts."""
    chain: list[CustodyEntry] = list(status.custody)
    for container in status.containers:
        held = sum(1 for e in chain if _opens_job(e, container.name))
        for n in range(held + 1, container.recaptures + 1):
            message = (
                f"the agent on node {status.node_name or '?'} lost capture job "
                f"{container.capture_key} (its job state); asked again with the same key, so "
                f"the kubelet is called again: capture {n + 1} of this container"
            )
            chain = custody.append(
                chain,
                subject,
                container=container.name,
                action=CustodyAction.REQUESTED,
                at=max(at, chain[-1].at) if chain else at,
                actor=OPERATOR,
                node=status.node_name or None,
                reason=AGENT_STATE_LOST,
                message=message[:1024],
            )
    if len(chain) == len(status.custody):
        return status
    new = status.model_copy(deep=True)
    new.custody = chain
    return new


def _opens_job(entry: CustodyEntry, container: str) -> bool:
    """A re-capture's entry: the only ``Requested`` about one container."""
    return entry.container == container and entry.action == CustodyAction.REQUESTED


def recorded_facts(chain: Sequence[CustodyEntry], container: str) -> int:
    """How many facts of ``container``'s current agent job the chain holds, so the next new fact
    is at this index of ``CaptureStatus.custodyEvents``.

    A fact's identity is (container, job, index in the job's facts): each fact became one entry,
    and a re-capture's ``Requested`` entry (:func:`record_recaptures`) starts a new job, whose
    facts start again at index 0. So only the entries after the container's last one count."""
    count = 0
    for entry in chain:
        if _opens_job(entry, container):
            count = 0
        elif entry.container == container and entry.action in AGENT_ACTIONS:
            count += 1
    return count


def record_facts(
    status: ForensicCheckpointStatus,
    facts: Mapping[str, Sequence[CustodyFact]],
    *,
    subject: str,
) -> ForensicCheckpointStatus:
    """``status`` with the agent's new custody facts (per container, as the agent reported
    them) appended to the chain, container by container in status order.

    The agent's facts of one job are append-only and ordered, so those past
    :func:`recorded_facts` are the new ones (record a re-capture's entry first:
    :func:`record_recaptures`); the operator is the chain's only writer, which keeps it one
    linear chain across containers. A fact dated before the chain's head (another container's
    job, another clock) is entered at the head's time, with its own time kept in the message.
    """
    chain: list[CustodyEntry] = list(status.custody)
    for container in status.containers:
        reported = facts.get(container.name, ())
        for fact in reported[recorded_facts(chain, container.name) :]:
            at = fact.time
            message = fact.message
            if chain and at < chain[-1].at:
                at = chain[-1].at
                note = f"reported at {fact.time.isoformat()}"
                message = f"{message} ({note})" if message else note
            chain = custody.append(
                chain,
                subject,
                container=container.name,
                action=fact.action,
                at=at,
                actor=Actor(kind=ActorKind.AGENT, name=fact.actor[:512]),
                node=fact.node or None,
                kubelet=fact.kubelet_response,
                sha256=fact.sha256,
                size_bytes=fact.size_bytes,
                url=fact.url,
                object_sha256=fact.object_sha256,
                encrypted=fact.encrypted,
                reason=fact.reason,
                message=message[:1024] if message else None,
            )
    if len(chain) == len(status.custody):
        return status
    new = status.model_copy(deep=True)
    new.custody = chain
    return new
