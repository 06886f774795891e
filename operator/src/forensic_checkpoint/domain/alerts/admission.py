"""Which alert captures hold a slot under the receiver's concurrency cap, which wait, and in
what order they are admitted (pure; the operator's :mod:`controller.capture.admission` acts).

An alert capture (a ForensicCheckpoint with ``spec.reason.alert``, which only the receiver may
set) is created at once, whether a slot is free or not. The operator admits it before its first
request to the agent; one over the cap waits in phase ``Queued``. All of this lives in the
objects, so a queued alert survives an operator restart: the status says who holds a slot, and
the order is the receiver's ``spec.reason.alert.acceptedAt`` (then creation time, then name).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from forensic_checkpoint.api.forensiccheckpoint import (
    ForensicCheckpoint,
    ForensicCheckpointStatus,
    Phase,
)


class Slot(Enum):
    #: Admitted and not past its kubelet calls: counts against the cap.
    HOLDING = "holding"
    #: Not admitted yet: waits its turn.
    WAITING = "waiting"
    #: Past its kubelet calls (Analyzing, Completed, Failed): no slot.
    DONE = "done"


def is_alert_capture(fcp: ForensicCheckpoint) -> bool:
    return fcp.spec.reason is not None and fcp.spec.reason.alert is not None


def slot(status: ForensicCheckpointStatus | None) -> Slot:
    """An alert capture's place under the cap, from its status alone: admitted once its targets
    are resolved (the first thing an admitted capture writes), free again at Analyzing."""
    if status is None or status.phase is Phase.QUEUED:
        return Slot.WAITING
    if status.phase in (Phase.ANALYZING, Phase.COMPLETED, Phase.FAILED):
        return Slot.DONE
    return Slot.HOLDING if status.containers else Slot.WAITING


def admission_order(fcp: ForensicCheckpoint) -> tuple[str, str, str]:
    """Sort key: the receiver's acceptance time, then creation time, then namespace/name."""
    alert = fcp.spec.reason.alert if fcp.spec.reason is not None else None
    accepted = alert.accepted_at if alert is not None else None
    meta = fcp.metadata
    return (
        _iso(accepted) if accepted is not None else "",
        str(meta.get("creationTimestamp", "")),
        f"{meta.get('namespace', '')}/{meta.get('name', '')}",
    )


def queued(
    status: ForensicCheckpointStatus | None, *, cap: int, now: datetime
) -> ForensicCheckpointStatus:
    """The status of an alert capture that waits for a slot."""
    new = (status or ForensicCheckpointStatus()).model_copy(deep=True)
    new.phase = Phase.QUEUED
    new.reason = "Queued"
    new.message = (
        f"waiting for one of the {cap} alert-capture slots (--alerts-max-concurrent); "
        "admitted in the order the alerts arrived"
    )
    new.started_at = new.started_at or now
    return new


def _iso(value: datetime) -> str:
    return value.isoformat()
