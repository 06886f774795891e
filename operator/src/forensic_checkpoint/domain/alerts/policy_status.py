"""What a ForensicCapturePolicy's status says: the receiver counts what each policy matched and
created between two refreshes (a :class:`Tally`), and each refresh folds those counts into the
status the policy already carries, so that the totals survive an operator restart (the
operator is the status's only writer)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from forensic_checkpoint.api.conditions import ConditionStatus
from forensic_checkpoint.api.policy import ForensicCapturePolicy, ForensicCapturePolicyStatus
from forensic_checkpoint.domain.conditions import set_condition

ACCEPTED = "Accepted"


@dataclass
class Tally:
    """One policy's counts since the last status write."""

    matched: int = 0
    created: int = 0
    queued: int = 0
    queue_full: int = 0
    last_match: datetime | None = None
    last_capture: str | None = None

    def match(
        self, now: datetime, capture: str | None, *, queued: bool = False, queue_full: bool = False
    ) -> None:
        self.matched += 1
        self.last_match = now
        self.queue_full += queue_full
        if capture is not None:
            self.created += 1
            self.queued += queued
            self.last_capture = capture


def next_status(
    policy: ForensicCapturePolicy, tally: Tally | None, now: datetime
) -> ForensicCapturePolicyStatus | None:
    """The policy's new status, or None when the one it has is still true (no write)."""
    current = policy.status or ForensicCapturePolicyStatus()
    generation = policy.metadata.get("generation")
    fresh = current.observed_generation == generation and any(
        c.type == ACCEPTED for c in current.conditions
    )
    if fresh and (tally is None or tally.matched == 0):
        return None
    conditions = set_condition(
        current.conditions,
        type_=ACCEPTED,
        status=ConditionStatus.TRUE,
        reason="InUse",
        message="The alert receiver uses this generation of the policy.",
        generation=generation,
        now=now,
    )
    tally = tally or Tally()
    return ForensicCapturePolicyStatus(
        observed_generation=generation,
        conditions=conditions,
        alerts_matched=current.alerts_matched + tally.matched,
        captures_created=current.captures_created + tally.created,
        captures_queued=current.captures_queued + tally.queued,
        alerts_refused_queue_full=current.alerts_refused_queue_full + tally.queue_full,
        last_match_time=tally.last_match or current.last_match_time,
        last_capture=tally.last_capture or current.last_capture,
    )
