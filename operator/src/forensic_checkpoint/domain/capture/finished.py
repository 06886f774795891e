"""A ForensicCheckpoint after its capture: what the agent may still report, and folding it in.

A finished container is still followed while its export runs, while its archive is kept on the
node (retention may delete it) and while the agent watches for an archive the kubelet may write
after a failed call. The first and the last take seconds to minutes and are followed by the
object's own daemon (:func:`needs_daemon`); a kept archive lasts months, so all the kept
archives of a node are followed together, with one call to its agent (:func:`kept_jobs`,
:func:`has_news`). Pure functions, as in :mod:`forensic_checkpoint.domain.capture.reconcile`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from forensic_checkpoint.api.agent import (
    ArchiveInfo,
    CaptureDigest,
    CaptureStatus,
    CustodyFact,
    ExportProgress,
)
from forensic_checkpoint.api.forensiccheckpoint import (
    ArchiveStatus,
    ContainerCapturePhase,
    ContainerStatus,
    ExportStatus,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.domain.evidence.checkpoint_custody import recorded_facts

#: How long after the agent's late-archive watch ends a failed container is still polled once.
LATE_ARCHIVE_SLACK = timedelta(seconds=30)


def archive_status(info: ArchiveInfo) -> ArchiveStatus:
    """The archive as the agent verified it, as the container's status shows it."""
    return ArchiveStatus(
        path=info.path, sha256=info.sha256, size_bytes=info.size_bytes, captured_at=info.captured_at
    )


#: Agent export phases after which the operator stops polling a Completed capture.
_EXPORT_ACTIVE = frozenset({"Pending", "Exporting", "Retrying"})


def apply_export(container: ContainerStatus, export: ExportProgress | None) -> ContainerStatus:
    """Fold the agent's export sub-status into the container's (absent: export not configured)."""
    if export is None:
        return container
    new = container.model_copy(deep=True)
    record = export.record
    new.export = ExportStatus(
        phase=export.phase.value,
        reason=export.reason,
        message=(export.message or "")[:1024],
        destination=record.url if record else "",
        sha256=record.sha256 if record else "",
        encrypted=record.encrypted if record else False,
        exported_at=record.exported_at if record else None,
    )
    return new


def exporting(container: ContainerStatus) -> bool:
    """Whether a Completed container's export is still under way (so keep polling its agent)."""
    return container.export is not None and container.export.phase in _EXPORT_ACTIVE


def archive_kept(container: ContainerStatus) -> bool:
    """Whether a finished container's archive is still on its node (retention may delete it):
    a Completed one's, or the late archive kept with a Failed one."""
    kept = container.phase == ContainerCapturePhase.COMPLETED or (
        container.phase == ContainerCapturePhase.FAILED and container.orphan_archive
    )
    return kept and container.archive is not None and not container.archive_deleted


def awaiting_late_archive(container: ContainerStatus, now: datetime) -> bool:
    """Whether a Failed container's agent still watches for an archive the kubelet may write
    after the agent gave up on the call (``lateArchiveWatchUntil``)."""
    until = container.late_archive_watch_until
    return (
        container.phase == ContainerCapturePhase.FAILED
        and container.archive is None
        and until is not None
        and now <= until + LATE_ARCHIVE_SLACK
    )


def following(container: ContainerStatus, now: datetime) -> bool:
    """Whether a finished container's agent may still report something about it."""
    return exporting(container) or archive_kept(container) or awaiting_late_archive(container, now)


def follow_up(status: ForensicCheckpointStatus, now: datetime) -> bool:
    """Whether a finished ForensicCheckpoint still has agent work to follow soon (an export, or
    a late archive the agent watches for)."""
    return any(exporting(c) or awaiting_late_archive(c, now) for c in status.containers)


def keep_following(status: ForensicCheckpointStatus, now: datetime) -> bool:
    """Whether the agent may still report custody facts of a finished ForensicCheckpoint: an
    export under way, an archive that retention may yet delete, or a late archive."""
    return any(following(c, now) for c in status.containers)


def apply_follow_up(container: ContainerStatus, capture: CaptureStatus) -> ContainerStatus:
    """A finished container after an agent poll: its export, whether retention deleted the
    archive, and an archive the kubelet wrote after the capture failed (kept, not analysed)."""
    new = apply_export(container, capture.export)
    if (
        new.phase == ContainerCapturePhase.FAILED
        and new.archive is None
        and capture.archive is not None
    ):
        new = new.model_copy(
            update={
                "archive": archive_status(capture.archive),
                "orphan_archive": capture.orphan_archive,
                "message": (capture.message or new.message)[:1024],
            }
        )
    if capture.archive_deleted_at is not None and not new.archive_deleted:
        new = new.model_copy(update={"archive_deleted": True})
    return new


def needs_daemon(status: ForensicCheckpointStatus, now: datetime) -> bool:
    """Whether the object needs its own daemon: a capture under way, or a finished one with
    agent work that ends soon (an export, a late archive). A kept archive alone does not: it is
    followed with the other kept archives of its node (:func:`kept_containers`)."""
    return not status.phase.terminal or follow_up(status, now)


@dataclass(frozen=True)
class KeptJob:
    """One kept archive's agent job as the batched poll needs it: the key to look up, and how
    many of the job's custody facts the chain already holds."""

    container: str
    key: str
    recorded_facts: int


def kept_jobs(status: ForensicCheckpointStatus, now: datetime) -> list[KeptJob]:
    """The jobs of a finished object whose archive is kept on the node and whose news come from
    the node's batched poll (none while the object's own daemon follows it)."""
    if needs_daemon(status, now):
        return []
    return [
        KeptJob(c.name, c.capture_key, recorded_facts(status.custody, c.name))
        for c in status.containers
        if archive_kept(c) and c.capture_key
    ]


def has_news(job: KeptJob, digest: CaptureDigest) -> bool:
    """Whether the agent's digest of a kept job says something the status lacks: a deleted
    archive, or a custody fact past those recorded (a job's facts are append-only)."""
    return digest.archive_deleted or digest.custody_events > job.recorded_facts


def fold_follow_ups(
    status: ForensicCheckpointStatus, captures: Mapping[str, CaptureStatus], now: datetime
) -> tuple[ForensicCheckpointStatus, dict[str, list[CustodyFact]]]:
    """A finished object after its agent answered for some of its containers (``captures`` by
    container name): each followed container's follow-up, and the facts to record."""
    new = status.model_copy(deep=True)
    facts: dict[str, list[CustodyFact]] = {}
    for i, container in enumerate(new.containers):
        capture = captures.get(container.name)
        if capture is None or not following(container, now):
            continue
        facts[container.name] = list(capture.custody_events)
        new.containers[i] = apply_follow_up(container, capture)
    return new, facts
