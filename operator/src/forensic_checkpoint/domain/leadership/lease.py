"""Who holds the operator's Lease, and what a replica does next (client-go's algorithm).

A replica never compares its clock with another's: a Lease held by someone else counts as
expired only when its record has not changed for ``lease_duration`` by the replica's *own*
monotonic clock, since it first saw that record (client-go's ``observedTime``). The holder
renews every ``retry_period`` and gives up (the process exits) when no renewal succeeded for
``renew_deadline``, which is shorter than ``lease_duration``: it stops acting before anyone
else may take the Lease.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum


@dataclass(frozen=True)
class LeaseTimings:
    """controller-runtime's defaults: 15 s / 10 s / 2 s."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def validate(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration "
                f"(got {self.retry_period} / {self.renew_deadline} / {self.lease_duration})"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec (and its resourceVersion, for an update that fails on a race)."""

    holder: str | None
    lease_duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int = 0
    resource_version: str | None = None

    def same_term(self, other: LeaseRecord | None) -> bool:
        """Unchanged since ``other`` was read (a renewal changes ``renew_time``)."""
        return other is not None and (self.holder, self.renew_time, self.transitions) == (
            other.holder,
            other.renew_time,
            other.transitions,
        )


class Verdict(Enum):
    ACQUIRE = "acquire"  # free, expired or ours: write ourselves in
    WAIT = "wait"  # someone else holds a live Lease


def verdict(record: LeaseRecord | None, me: str, *, unchanged_for: float) -> Verdict:
    """``unchanged_for``: seconds since this replica first saw ``record`` as it is now."""
    if record is None or not record.holder or record.holder == me:
        return Verdict.ACQUIRE
    if unchanged_for >= record.lease_duration_seconds:
        return Verdict.ACQUIRE
    return Verdict.WAIT


def claimed(
    record: LeaseRecord | None, me: str, now: datetime, timings: LeaseTimings
) -> LeaseRecord:
    """The record that makes ``me`` the holder: a renewal keeps the acquire time and the count
    of transitions; a take-over starts a new term."""
    duration = max(1, round(timings.lease_duration))
    if record is not None and record.holder == me:
        return replace(record, renew_time=now, lease_duration_seconds=duration)
    return LeaseRecord(
        holder=me,
        lease_duration_seconds=duration,
        acquire_time=now,
        renew_time=now,
        transitions=record.transitions + 1 if record is not None else 0,
        resource_version=record.resource_version if record is not None else None,
    )


def released(record: LeaseRecord, now: datetime) -> LeaseRecord:
    """What a holder writes on a clean stop: no holder, so a standby takes over at once."""
    return replace(record, holder=None, renew_time=now, lease_duration_seconds=1)
