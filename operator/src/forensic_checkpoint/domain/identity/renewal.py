"""When an agent renews its serving certificate: once ``fraction`` of its validity has passed
(2/3 by default, as the kubelet does), so that a renewal that fails keeps a third of the
lifetime to be retried in before the operator can no longer verify the agent."""

from __future__ import annotations

from datetime import datetime, timedelta

DEFAULT_FRACTION = 2 / 3


def renew_at(
    not_before: datetime, not_after: datetime, fraction: float = DEFAULT_FRACTION
) -> datetime:
    """The moment to ask for the next certificate."""
    if not 0 < fraction <= 1:
        raise ValueError(f"renewal fraction {fraction} is not in (0, 1]")
    return not_before + (not_after - not_before) * fraction


def seconds_to_renewal(
    now: datetime, not_before: datetime, not_after: datetime, fraction: float = DEFAULT_FRACTION
) -> float:
    """Seconds until :func:`renew_at` (0 when it has passed, or the certificate expired)."""
    return max(0.0, (renew_at(not_before, not_after, fraction) - now).total_seconds())


def usable(now: datetime, not_before: datetime, not_after: datetime) -> bool:
    """Whether a certificate found on disk can still be served (a restart keeps it)."""
    return not_before - timedelta(minutes=5) <= now < not_after
