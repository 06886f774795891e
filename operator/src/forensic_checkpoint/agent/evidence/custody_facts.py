"""The custody facts the agent reports (``CaptureStatus.custodyEvents``).

The operator owns the CR's hash chain; the agent only records what it did, in order, in the job
record on disk, so that a fact survives an agent restart and the operator can pick up each new
one by its index. The exported manifest needs a chain of its own (it is checked offline by
``forensic-checkpoint verify --sidecar``): :func:`manifest_chain` builds it from the same facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from forensic_checkpoint.agent.jobs import JobRecord
from forensic_checkpoint.api.agent import CustodyFact
from forensic_checkpoint.api.custody import (
    Actor,
    ActorKind,
    CustodyAction,
    CustodyEntry,
    KubeletResponse,
)
from forensic_checkpoint.domain.evidence import custody


def actor(node: str) -> str:
    return f"agent/{node}"


def add(record: JobRecord, fact: CustodyFact) -> None:
    """Append ``fact``; times never go backwards within one job (the operator chains them)."""
    events = record.status.custody_events
    if events and fact.time < events[-1].time:
        fact = fact.model_copy(update={"time": events[-1].time})
    events.append(fact)


def captured(
    record: JobRecord, node: str, at: datetime, kubelet_status: int | None, path: str
) -> CustodyFact:
    archive = record.status.archive
    return CustodyFact(
        action=CustodyAction.CAPTURED,
        time=at,
        actor=actor(node),
        node=node,
        container=record.request.container,
        kubelet_response=(
            KubeletResponse(status_code=kubelet_status, message=path[:1024])
            if kubelet_status is not None
            else None
        ),
        sha256=archive.sha256 if archive else None,
        size_bytes=archive.size_bytes if archive else None,
        message=None if kubelet_status is not None else f"adopted {path} after a restart"[:1024],
    )


def orphan(
    record: JobRecord,
    node: str,
    at: datetime,
    action: CustodyAction,
    *,
    reason: str,
    sha256: str,
    size_bytes: int,
    message: str,
) -> CustodyFact:
    """An archive the kubelet wrote after the agent gave up on the call: kept (``Captured``)
    or deleted under the orphan policy (``Deleted``). There is no kubelet answer to record."""
    return CustodyFact(
        action=action,
        time=at,
        actor=actor(node),
        node=node,
        container=record.request.container,
        sha256=sha256,
        size_bytes=size_bytes,
        reason=reason,
        message=message[:1024],
    )


def from_entries(
    entries: Sequence[CustodyEntry], record: JobRecord, node: str
) -> list[CustodyFact]:
    """The exporter's Exported and Verified entries as facts (their hashes are the manifest's)."""
    return [
        CustodyFact(
            action=entry.action,
            time=entry.at,
            actor=actor(node),
            node=node,
            container=record.request.container,
            sha256=entry.sha256,
            size_bytes=entry.size_bytes,
            url=entry.url,
            object_sha256=entry.object_sha256,
            encrypted=entry.encrypted,
            message=entry.message,
        )
        for entry in entries
        if entry.action in (CustodyAction.EXPORTED, CustodyAction.VERIFIED)
    ]


def deleted(record: JobRecord, node: str, at: datetime, reason: str, message: str) -> CustodyFact:
    archive = record.status.archive
    return CustodyFact(
        action=CustodyAction.DELETED,
        time=at,
        actor=actor(node),
        node=node,
        container=record.request.container,
        sha256=archive.sha256 if archive else None,
        size_bytes=archive.size_bytes if archive else None,
        reason=reason,
        message=message[:1024],
    )


def manifest_chain(record: JobRecord, subject: str) -> list[CustodyEntry]:
    """The node's chain for this container (its Captured fact), which the exporter extends with
    Exported and Verified and stores in the manifest. The CR's ``status.custody`` is a different
    chain (the operator's, with ``Requested`` first and every container): both verify on their
    own, under the same subject (the CR uid). Exported and Verified entries, which the exporter
    appends, do not name the container; their URL does."""
    chain: list[CustodyEntry] = []
    for fact in record.status.custody_events:
        if fact.action is not CustodyAction.CAPTURED:
            continue
        chain = custody.append(
            chain,
            subject,
            action=fact.action,
            at=fact.time,
            actor=Actor(kind=ActorKind.AGENT, name=fact.actor),
            container=fact.container,  # hashed with the entry, as in the operator's chain
            node=fact.node,
            kubelet=fact.kubelet_response,
            sha256=fact.sha256,
            size_bytes=fact.size_bytes,
            message=fact.message,
        )
    return chain
