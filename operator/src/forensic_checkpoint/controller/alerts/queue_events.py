"""The loud part of a QueueFull refusal: a Warning Event on the policy that matched.

Every refused alert is counted (``forensic_checkpoint_alerts_total{reason="QueueFull"}``),
logged at WARNING and added to the policy's ``status.alertsRefusedQueueFull``. On top of that,
each request with refusals posts one Warning Event per policy, at most one per policy every
:data:`MIN_EVENT_GAP` seconds (a storm must not become an Event storm on the API server); the
refusals a skipped Event would have named are added to the next one's count.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from forensic_checkpoint.api.policy import ForensicCapturePolicy
from forensic_checkpoint.domain.alerts.limits import Clock
from forensic_checkpoint.domain.alerts.policy import Decision, DecisionReason
from forensic_checkpoint.errors import ForensicCheckpointError

log = logging.getLogger("forensic_checkpoint.alerts")

MIN_EVENT_GAP = 1.0
EVENT_REASON = "QueueFull"


class _Outcome(Protocol):
    @property
    def decision(self) -> Decision: ...

    @property
    def reason(self) -> DecisionReason: ...


class _EventPoster(Protocol):
    async def post_policy_event(
        self, policy: ForensicCapturePolicy, type_: str, reason: str, message: str
    ) -> None: ...


class QueueFullEvents:
    def __init__(self, backend: _EventPoster, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock
        self._posted_at: dict[str, float] = {}
        #: Refusals not yet named in an Event, per policy.
        self._unreported: Counter[str] = Counter()

    async def report(self, outcomes: Iterable[_Outcome]) -> None:
        policies: dict[str, ForensicCapturePolicy] = {}
        for outcome in outcomes:
            policy = outcome.decision.policy
            if outcome.reason is DecisionReason.QUEUE_FULL and policy is not None:
                self._unreported[policy.name] += 1
                policies[policy.name] = policy
        for name, policy in policies.items():
            now = self._clock()
            if now - self._posted_at.get(name, float("-inf")) < MIN_EVENT_GAP:
                continue
            count = self._unreported.pop(name)
            self._posted_at[name] = now
            message = (
                f"{count} alert(s) refused: the capture queue is full; their evidence is NOT "
                "captured (raise --alerts-max-queued or --alerts-max-concurrent, see the "
                "operator log for each alert)"
            )
            try:
                await self._backend.post_policy_event(policy, "Warning", EVENT_REASON, message)
            except ForensicCheckpointError as exc:  # the metric and the log still say it
                log.warning("alert receiver: cannot post a QueueFull Event: %s", exc.message)
                self._unreported[name] += count
