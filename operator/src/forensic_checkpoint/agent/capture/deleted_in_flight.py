"""A capture deleted while in flight (its ForensicCheckpoint was deleted mid-capture).

The kubelet call cannot be taken back: the runtime may still write the archive, seconds after
the operator dropped its finalizer. ``DELETE`` of an unfinished job therefore does not remove
it: it marks the job (``deleted_while_capturing_at``, on disk), and whatever archive the call
writes, answered or late (the orphan watch, until the kubelet's deadline), is hashed and deleted
when it lands, with a ``Deleted`` custody fact on the job, whose record stays as the account.
A held job keeps its archive as evidence instead (as the orphan ``adopt`` policy does).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from forensic_checkpoint.agent.evidence import custody_facts
from forensic_checkpoint.agent.jobs import JobRecord
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.analysis.format.file_hash import sha256_file
from forensic_checkpoint.api.custody import CustodyAction

log = logging.getLogger(__name__)

#: Reason of the job, and of its Deleted fact, when its archive landed after its DELETE.
DELETED_WHILE_CAPTURING = "DeletedWhileCapturing"


def discards(record: JobRecord) -> bool:
    """Whether an archive landing for ``record`` is to be deleted at once."""
    return record.deleted_while_capturing_at is not None and not record.status.held


def discard(
    record: JobRecord,
    archive: Path,
    node: str,
    now: datetime,
    hashed: tuple[str, int] | None = None,
) -> tuple[str, int]:
    """sha256 ``archive`` (unless ``hashed`` gives it), delete it and record a ``Deleted`` fact
    on ``record`` (the caller saves it); the hash and size."""
    digest, size = hashed or sha256_file(archive)
    archive.unlink(missing_ok=True)
    note = (
        f"the capture was deleted while in flight; the kubelet then wrote {archive} "
        f"({size} bytes, sha256 {digest}), deleted when it landed"
    )
    record.status.message = f"{record.status.message or ''}; {note}".lstrip("; ")[:4096]
    custody_facts.add(
        record,
        custody_facts.orphan(
            record,
            node,
            now,
            CustodyAction.DELETED,
            reason=DELETED_WHILE_CAPTURING,
            sha256=digest,
            size_bytes=size,
            message=f"{archive} written after its capture was deleted",
        ),
    )
    return digest, size


def report(metrics: AgentMetrics, record: JobRecord, archive: Path, action: str) -> None:
    """Log and count a late archive of a deleted capture: ``deleted`` or ``kept`` (held)."""
    metrics.orphan_archives.labels(action=f"late-{action}").inc()
    log.warning(
        "capture %s was deleted while in flight; its archive %s landed and was %s%s",
        record.status.key,
        archive,
        action,
        " (legal hold: kept as evidence)" if action == "kept" else "",
    )
