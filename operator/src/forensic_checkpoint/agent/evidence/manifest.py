"""The evidence manifest written beside an exported archive, and the custody entries it adds."""

from __future__ import annotations

from collections.abc import Sequence

from forensic_checkpoint.api.custody import (
    Actor,
    ActorKind,
    CustodyAction,
    CustodyEntry,
    EvidenceManifest,
    EvidenceTarget,
    ExportRecord,
)
from forensic_checkpoint.domain.evidence import custody


def build_manifest(
    chain: Sequence[CustodyEntry], target: EvidenceTarget, record: ExportRecord
) -> EvidenceManifest:
    """The manifest of an export whose chain already holds its Exported and Verified entries."""
    return EvidenceManifest(
        subject=target.custody_subject,
        target=target,
        export=record,
        custody=list(chain),
        custody_head=custody.head(chain, target.custody_subject),
    )


def exported_chain(
    chain: Sequence[CustodyEntry], target: EvidenceTarget, record: ExportRecord, node_name: str
) -> list[CustodyEntry]:
    """``chain`` plus the Exported and Verified entries of ``record``, by this node's agent."""
    actor = Actor(kind=ActorKind.AGENT, name=node_name or target.node or "agent")
    at = max(record.exported_at, chain[-1].at) if chain else record.exported_at
    chain = custody.append(
        chain,
        target.custody_subject,
        action=CustodyAction.EXPORTED,
        at=at,
        actor=actor,
        node=target.node or None,
        sha256=record.archive_sha256,
        size_bytes=record.size_bytes,
        url=record.url,
        object_sha256=record.sha256,
        encrypted=record.encrypted,
    )
    return custody.append(
        chain,
        target.custody_subject,
        action=CustodyAction.VERIFIED,
        at=at,
        actor=actor,
        url=record.url,
        object_sha256=record.sha256,
        message="object read back from the store; sha256 matches",
    )
