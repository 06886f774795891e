"""The Kubernetes Events a ForensicCheckpoint posts (pure): its capture's transitions, its legal
hold, and the clean-up after its deletion.

Events are derived from two statuses, old and new, and only for what changed between them, so
a restarted operator that recomputes a status it already wrote posts nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from forensic_checkpoint.api.conditions import ConditionStatus
from forensic_checkpoint.api.forensiccheckpoint import (
    ContainerCapturePhase,
    ContainerStatus,
    ForensicCheckpointStatus,
    Phase,
)
from forensic_checkpoint.domain.capture.suspicion import SUSPICIOUS
from forensic_checkpoint.domain.conditions import find_condition
from forensic_checkpoint.domain.formatting import human_size, with_remediation


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about a transition."""

    type: str  # "Normal" | "Warning"
    reason: str
    message: str


def transition_events(old: ForensicCheckpointStatus, new: ForensicCheckpointStatus) -> list[Event]:
    """Events for what changed between two statuses (none when nothing did, so a restarted
    operator does not repeat them)."""
    events: list[Event] = []
    before = {c.name: c for c in old.containers}
    if not old.containers and new.containers:
        events.append(
            Event(
                "Normal",
                "Resolved",
                f"checkpointing {new.container_names} of pod on node {new.node_name}",
            )
        )
    for container in new.containers:
        prev = before.get(container.name)
        events.extend(_recapture_events(prev, container, new.node_name))
        events.extend(_archive_events(prev, container))
        events.extend(_phase_events(prev, container))
    for container in new.containers:
        events.extend(_export_events(before.get(container.name), container))
    events.extend(_object_events(old, new))
    return events


def _recapture_events(old: ContainerStatus | None, new: ContainerStatus, node: str) -> list[Event]:
    if new.recaptures <= (old.recaptures if old is not None else 0):
        return []
    text = (
        f"container {new.name}: the agent on node {node} lost capture job {new.capture_key} "
        f"(its job state) and was asked again with the same key: the kubelet is called again "
        f"(re-capture {new.recaptures}); custody keeps every archive"
    )
    return [Event("Warning", "Recaptured", text[:1024])]


def _archive_events(old: ContainerStatus | None, new: ContainerStatus) -> list[Event]:
    # On the archive's first appearance (or a re-capture's new one), not on a phase: a fast
    # capture and analysis can go from Capturing to Completed between two polls.
    archive = new.archive
    if archive is None or (
        old is not None and old.archive is not None and old.archive.sha256 == archive.sha256
    ):
        return []
    size = human_size(archive.size_bytes)
    if new.orphan_archive:
        return [
            Event(
                "Warning",
                "OrphanArchive",
                f"container {new.name}: the kubelet wrote the archive after the capture failed: "
                f"{size}, sha256 {archive.sha256}, kept on the node (not analysed)",
            )
        ]
    text = f"container {new.name}: {size} archive, sha256 {archive.sha256}"
    return [Event("Normal", "Captured", text)]


def _phase_events(old: ContainerStatus | None, new: ContainerStatus) -> list[Event]:
    was = old.phase if old else ContainerCapturePhase.PENDING
    if new.phase == was:
        return []
    if new.phase == ContainerCapturePhase.CAPTURING and was == ContainerCapturePhase.PENDING:
        return [Event("Normal", "CaptureRequested", f"container {new.name}: agent asked")]
    if new.phase == ContainerCapturePhase.FAILED:
        text = with_remediation(f"container {new.name}: {new.message}", new.remediation)
        return [Event("Warning", new.reason or "CaptureFailed", text)]
    return []


def _object_events(old: ForensicCheckpointStatus, new: ForensicCheckpointStatus) -> list[Event]:
    events: list[Event] = []
    # Once per object: the condition is stored, so a restarted operator sees it was already True.
    suspicious = find_condition(new.conditions, SUSPICIOUS)
    was = find_condition(old.conditions, SUSPICIOUS)
    if (
        suspicious is not None
        and suspicious.status == ConditionStatus.TRUE
        and (was is None or was.status != ConditionStatus.TRUE)
    ):
        events.append(Event("Warning", SUSPICIOUS, suspicious.message[:1024]))
    if new.phase != old.phase and new.phase == Phase.COMPLETED:
        events.append(Event("Normal", "Completed", new.message))
    elif new.phase != old.phase and new.phase == Phase.FAILED and not new.containers:
        events.append(Event("Warning", new.reason or "Failed", new.message))
    return events


def _export_events(old: ContainerStatus | None, new: ContainerStatus) -> list[Event]:
    was = old.export.phase if old is not None and old.export is not None else ""
    export = new.export
    if export is None or export.phase == was:
        return []
    if export.phase == "Exported":
        return [
            Event(
                "Normal",
                "Exported",
                f"container {new.name}: {export.destination}, sha256 {export.sha256} verified",
            )
        ]
    if export.phase == "Failed":
        return [
            Event(
                "Warning",
                export.reason or "ExportFailed",
                f"container {new.name}: {export.message}"[:1024],
            )
        ]
    return []


def hold_changed(held: bool, node_name: str) -> Event:
    """The agent was told that the hold was set or lifted."""
    verb = "set" if held else "lifted"
    reason = "HoldSet" if held else "HoldLifted"
    return Event("Normal", reason, f"legal hold {verb} on node {node_name}")


def archive_held() -> Event:
    """The deleted ForensicCheckpoint is held: its archives are not deleted."""
    return Event("Normal", "ArchiveHeld", "hold is set: the archives stay on the node")


def archive_deleted(count: int, node_name: str, in_flight: int = 0) -> Event:
    """``in_flight``: captures still calling the kubelet, whose archives the agent deletes
    when they land (it keeps their job records as the account)."""
    late = (
        f"; {in_flight} capture(s) were in flight: the agent deletes their archives when they "
        "land and records it in its job records"
        if in_flight
        else ""
    )
    return Event("Normal", "ArchiveDeleted", f"deleted {count} file(s) on node {node_name}{late}")


def archive_not_deleted(node_name: str, message: str) -> Event:
    """The clean-up ran out of retries: the files stay on the node."""
    return Event(
        "Warning",
        "ArchiveNotDeleted",
        f"gave up deleting the archives on {node_name}: {message}",
    )
