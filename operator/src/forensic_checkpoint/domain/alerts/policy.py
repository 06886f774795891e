"""Pure decisions: should this alert become a ForensicCheckpoint, and if not, why not.

:class:`AlertGate` runs the checks in a fixed order, cheapest and most final first::

    resolved / test event -> duplicate -> target (names a pod?) -> policy match
    -> per-pod cooldown -> queue bound -> global rate limit -> capture, or queued at the cap

Every outcome is a :class:`Decision` with a CamelCase ``reason`` (a metrics label) and a
one-line message (for the JSON log). An alert over the concurrency cap is not refused: it is
``Queued`` (its ForensicCheckpoint is created at once and waits in phase Queued for the
operator to admit it, in acceptance order). Only past the queue bound is it refused
(``QueueFull``). The dedupe key is remembered for every final outcome, so a re-sent alert gets
the same answer; it is *not* remembered when the alert was only held back by the rate limit or
the queue bound, so that Alertmanager's next re-send can still capture.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from forensic_checkpoint.api.alerts import FalcoPriority
from forensic_checkpoint.api.policy import (
    AlertSource,
    ContainerSelection,
    ForensicCapturePolicy,
    LabelSelector,
    PolicyMatch,
    SelectorOperator,
)
from forensic_checkpoint.domain.alerts.events import AlertEvent
from forensic_checkpoint.domain.alerts.limits import (
    ActiveCaptures,
    Clock,
    ExpiringSet,
    TokenBucket,
)
from forensic_checkpoint.domain.alerts.target import (
    NoTargetError,
    Target,
    TargetMapping,
    map_target,
)


class DecisionReason(StrEnum):
    CAPTURE = "Capture"
    #: A capture over the concurrency cap: created at once, admitted when a slot frees.
    QUEUED = "Queued"
    RESOLVED = "Resolved"
    TEST_EVENT = "TestEvent"
    DUPLICATE = "Duplicate"
    NO_POD = "NoPod"
    NO_NAMESPACE = "NoNamespace"
    NO_CONTAINER = "NoContainer"
    NO_MATCHING_POLICY = "NoMatchingPolicy"
    NAMESPACE_EXCLUDED = "NamespaceExcluded"
    COOLDOWN = "Cooldown"
    #: Past the queue bound (``max_concurrent + max_queued`` captures not past their kubelet
    #: call): refused, loudly (metric, WARNING log, Warning Event on the policy).
    QUEUE_FULL = "QueueFull"
    RATE_LIMITED = "RateLimited"
    # Outcomes the receiver finds after a Capture decision, when it looks at the cluster:
    POD_NOT_FOUND = "PodNotFound"
    CONTAINER_NOT_FOUND = "ContainerNotFound"
    ALREADY_EXISTS = "AlreadyExists"
    CREATE_FAILED = "CreateFailed"


#: Outcomes that are the final answer for this alert; a re-send is a duplicate. Resolved and
#: test notifications leave no trace: they are answered before the dedupe check anyway.
_FINAL = frozenset(DecisionReason) - {
    DecisionReason.RATE_LIMITED,
    DecisionReason.QUEUE_FULL,
    DecisionReason.RESOLVED,
    DecisionReason.TEST_EVENT,
    DecisionReason.CREATE_FAILED,
}


@dataclass(frozen=True)
class Decision:
    reason: DecisionReason
    message: str
    event: AlertEvent
    target: Target | None = None
    policy: ForensicCapturePolicy | None = None
    #: Containers to capture; empty means all of the pod's (ForensicCheckpoint semantics).
    containers: tuple[str, ...] = ()

    @property
    def capture(self) -> bool:
        """A ForensicCheckpoint is to be created: now admitted, or queued behind the cap."""
        return self.reason in (DecisionReason.CAPTURE, DecisionReason.QUEUED)

    @property
    def capture_key(self) -> str:
        """Identifies this capture among the active ones (namespace/pod/dedupe key)."""
        target = self.target
        return f"{target.namespace}/{target.pod}/{self.event.dedupe_key}" if target else ""


@dataclass(frozen=True)
class Limits:
    #: Global rate limit: captures per second, and the burst allowed on top.
    #: The burst is sized for an attack that spreads: 20 distinct pods alerting at once must all
    #: be captured (issue 19); the rate bounds a storm that lasts.
    rate_per_second: float = 0.2
    burst: int = 30
    #: Alert captures at their kubelet call (admitted, not yet Analyzing/Completed/Failed) at
    #: once; more wait in phase Queued.
    max_concurrent: int = 3
    #: Alert captures waiting in phase Queued at most; past it an alert is refused (QueueFull).
    max_queued: int = 50
    #: How long a dedupe key is remembered (Alertmanager's default repeat_interval is 4 h).
    dedupe_ttl_seconds: float = 24 * 3600
    dedupe_max_entries: int = 100_000


# --- policy matching (stateless) -----------------------------------------------------------


@dataclass(frozen=True)
class PolicyMiss:
    reason: DecisionReason
    message: str


def match_policy(match: PolicyMatch, event: AlertEvent, namespace: str) -> PolicyMiss | None:
    """None when ``match`` takes the event for a pod in ``namespace``, else why not.

    The criteria are checked in their documented order: the alert's own (source, name, level,
    labels), then the namespace."""
    return _alert_miss(match, event) or _namespace_miss(match, namespace)


def _alert_miss(match: PolicyMatch, event: AlertEvent) -> PolicyMiss | None:
    miss = DecisionReason.NO_MATCHING_POLICY
    if match.sources and event.source not in match.sources:
        return PolicyMiss(miss, f"source {event.source} not in {list(map(str, match.sources))}")
    if match.alert_names and event.name not in match.alert_names:
        return PolicyMiss(miss, f"alert {event.name!r} not listed")
    level = _level_miss(match, event)
    if level is not None:
        return level
    if match.alert_labels is not None and not selector_matches(match.alert_labels, event.labels):
        return PolicyMiss(miss, "alert labels do not match the selector")
    return None


def _level_miss(match: PolicyMatch, event: AlertEvent) -> PolicyMiss | None:
    """Alertmanager's severity label or Falco's priority, whichever the source has."""
    miss = DecisionReason.NO_MATCHING_POLICY
    if match.severities and event.source is AlertSource.ALERTMANAGER:
        severity = event.labels.get(match.severity_label, "")
        if severity not in match.severities:
            return PolicyMiss(miss, f"severity {severity!r} not in {match.severities}")
    if match.minimum_priority is not None and event.source is AlertSource.FALCO:
        minimum = FalcoPriority.parse(match.minimum_priority.value)
        if event.priority is None or event.priority < minimum:
            got = event.priority.label if event.priority is not None else "none"
            return PolicyMiss(miss, f"priority {got} below {minimum.label}")
    return None


def _namespace_miss(match: PolicyMatch, namespace: str) -> PolicyMiss | None:
    if namespace in match.excluded_namespaces:
        return PolicyMiss(DecisionReason.NAMESPACE_EXCLUDED, f"namespace {namespace} excluded")
    if match.namespaces and namespace not in match.namespaces:
        return PolicyMiss(DecisionReason.NAMESPACE_EXCLUDED, f"namespace {namespace} not allowed")
    return None


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (``NotIn`` holds when the key is absent)."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for term in selector.match_expressions:
        present = term.key in labels
        value = labels.get(term.key)
        if term.operator is SelectorOperator.IN and value not in term.values:
            return False
        if term.operator is SelectorOperator.NOT_IN and present and value in term.values:
            return False
        if term.operator is SelectorOperator.EXISTS and not present:
            return False
        if term.operator is SelectorOperator.DOES_NOT_EXIST and present:
            return False
    return True


def ordered(policies: Sequence[ForensicCapturePolicy]) -> list[ForensicCapturePolicy]:
    """Evaluation order: by name, suspended policies left out."""
    return sorted((p for p in policies if not p.spec.suspend), key=lambda p: p.name)


# --- the stateful gate ---------------------------------------------------------------------


@dataclass
class AlertGate:
    """Decides for each alert, remembering what it needs across alerts (dedupe keys, per-pod
    cooldowns, the token bucket and the captures in flight). Not thread-safe: the receiver
    calls it from the event loop only."""

    limits: Limits = field(default_factory=Limits)
    mapping: TargetMapping = field(default_factory=TargetMapping)
    clock: Clock = time.monotonic
    _seen: ExpiringSet = field(init=False)
    _cooldowns: ExpiringSet = field(init=False)
    _bucket: TokenBucket = field(init=False)
    active: ActiveCaptures = field(init=False)

    def __post_init__(self) -> None:
        self._seen = ExpiringSet(self.clock, self.limits.dedupe_max_entries)
        self._cooldowns = ExpiringSet(self.clock, self.limits.dedupe_max_entries)
        self._bucket = TokenBucket(self.limits.rate_per_second, self.limits.burst, self.clock)
        self.active = ActiveCaptures(self.clock)

    def decide(self, event: AlertEvent, policies: Sequence[ForensicCapturePolicy]) -> Decision:
        decision = self._decide(event, policies)
        if decision.reason in _FINAL:
            self._seen.add(event.dedupe_key, self.limits.dedupe_ttl_seconds)
        if decision.capture and decision.target is not None and decision.policy is not None:
            self._cooldowns.add(_pod_key(decision.target), decision.policy.spec.cooldown_seconds)
            self.active.add(decision.capture_key)
        return decision

    def undo(self, decision: Decision, *, forget_alert: bool = True) -> None:
        """Take back a capture decision that produced no ForensicCheckpoint: its cooldown, its
        slot among the active captures and its token. With ``forget_alert`` (the create failed;
        we answer 5xx) the sender's retry is decided afresh instead of as a duplicate; without
        it (the pod does not exist) a re-send stays a duplicate."""
        if not decision.capture or decision.target is None:
            return
        if forget_alert:
            self._seen.discard(decision.event.dedupe_key)
        self._cooldowns.discard(_pod_key(decision.target))
        self.active.discard(decision.capture_key)
        self._bucket.give_back()

    def _decide(  # noqa: PLR0911 - the checks are a chain, each with its own answer
        self, event: AlertEvent, policies: Sequence[ForensicCapturePolicy]
    ) -> Decision:
        if not event.firing:
            return Decision(DecisionReason.RESOLVED, "resolved notifications are ignored", event)
        if event.is_test:
            return Decision(DecisionReason.TEST_EVENT, "Falcosidekick test event", event)
        if event.dedupe_key in self._seen:
            return Decision(DecisionReason.DUPLICATE, f"already handled {event.dedupe_key}", event)
        try:
            target = map_target(event, self.mapping)
        except NoTargetError as exc:
            return Decision(DecisionReason(exc.reason), str(exc), event)

        policy = self._first_match(event, target.namespace, policies)
        if isinstance(policy, PolicyMiss):
            return Decision(policy.reason, policy.message, event, target)

        if policy.spec.capture.containers is ContainerSelection.ALL:
            containers: tuple[str, ...] = ()
        elif target.container:
            containers = (target.container,)
        elif target.container_id:
            containers = ()  # resolved by the receiver against the pod's containerStatuses
        else:
            return Decision(
                DecisionReason.NO_CONTAINER,
                f"policy {policy.name} captures the alerted container; the alert names none",
                event,
                target,
                policy,
            )

        def held(reason: DecisionReason, message: str) -> Decision:
            return Decision(reason, message, event, target, policy, containers)

        pod_key = _pod_key(target)
        if pod_key in self._cooldowns:
            left = self._cooldowns.remaining(pod_key)
            return held(
                DecisionReason.COOLDOWN, f"pod {pod_key} captured recently ({left:.0f}s left)"
            )
        return self._limited(policy, held)

    def _limited(
        self,
        policy: ForensicCapturePolicy,
        held: Callable[[DecisionReason, str], Decision],
    ) -> Decision:
        """The queue bound, the rate limit, then Capture or (at the cap) Queued."""
        active, cap = len(self.active), self.limits.max_concurrent
        if active >= cap + self.limits.max_queued:
            return held(
                DecisionReason.QUEUE_FULL,
                f"capture queue full: {active} captures running or queued "
                f"(cap {cap}, queue bound {self.limits.max_queued})",
            )
        if not self._bucket.take():
            return held(
                DecisionReason.RATE_LIMITED,
                f"over {self.limits.rate_per_second}/s (burst {self.limits.burst})",
            )
        if active >= cap:
            return held(
                DecisionReason.QUEUED,
                f"policy {policy.name} matched; queued behind {active} captures (cap {cap})",
            )
        return held(DecisionReason.CAPTURE, f"policy {policy.name} matched")

    @staticmethod
    def _first_match(
        event: AlertEvent, namespace: str, policies: Sequence[ForensicCapturePolicy]
    ) -> ForensicCapturePolicy | PolicyMiss:
        candidates = ordered(policies)
        if not candidates:
            return PolicyMiss(DecisionReason.NO_MATCHING_POLICY, "no capture policy exists")
        misses: list[tuple[str, PolicyMiss]] = []
        for policy in candidates:
            miss = match_policy(policy.spec.match, event, namespace)
            if miss is None:
                return policy
            misses.append((policy.name, miss))
        # Report the most specific miss: a namespace exclusion means everything else matched.
        for name, miss in misses:
            if miss.reason is DecisionReason.NAMESPACE_EXCLUDED:
                return PolicyMiss(miss.reason, f"{name}: {miss.message}")
        summary = "; ".join(f"{name}: {miss.message}" for name, miss in misses[:3])
        return PolicyMiss(DecisionReason.NO_MATCHING_POLICY, summary)


def _pod_key(target: Target) -> str:
    return f"{target.namespace}/{target.pod}"
