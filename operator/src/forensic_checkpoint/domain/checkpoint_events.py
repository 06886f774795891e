"""The Kubernetes Events of a ForensicCheckpoint's legal hold and of the clean-up after its
deletion (pure). The capture's own transitions are in :func:`reconcile.transition_events`."""

from __future__ import annotations

from forensic_checkpoint.domain.reconcile import Event


def hold_changed(held: bool, node_name: str) -> Event:
    """The agent was told that the hold was set or lifted."""
    verb = "set" if held else "lifted"
    reason = "HoldSet" if held else "HoldLifted"
    return Event("Normal", reason, f"legal hold {verb} on node {node_name}")


def archive_held() -> Event:
    """The deleted ForensicCheckpoint is held: its archives are not deleted."""
    return Event("Normal", "ArchiveHeld", "hold is set: the archives stay on the node")


def archive_deleted(count: int, node_name: str) -> Event:
    return Event("Normal", "ArchiveDeleted", f"deleted {count} file(s) on node {node_name}")


def archive_not_deleted(node_name: str, message: str) -> Event:
    """The clean-up ran out of retries: the files stay on the node."""
    return Event(
        "Warning",
        "ArchiveNotDeleted",
        f"gave up deleting the archives on {node_name}: {message}",
    )
