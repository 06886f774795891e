"""Table tests of the capture decisions: matching, mapping, dedupe, cooldown and limits."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.alerts.helpers import FakeClock, payload, policy

from forensic_checkpoint.api.alerts import AlertmanagerWebhook, FalcoEvent
from forensic_checkpoint.domain.alerts.events import AlertEvent, from_alertmanager, from_falco
from forensic_checkpoint.domain.alerts.policy import AlertGate, DecisionReason, Limits
from forensic_checkpoint.domain.alerts.target import TargetMapping

R = DecisionReason


def am_event(**labels: str) -> AlertEvent:
    """The first alert of the captured Alertmanager group, with labels changed."""
    raw = payload("alertmanager-firing-group.json")
    alert = raw["alerts"][0]
    for key, value in labels.items():
        if value == "":
            alert["labels"].pop(key, None)
        else:
            alert["labels"][key] = value
    alert["fingerprint"] = "fp-" + "-".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return from_alertmanager(AlertmanagerWebhook.model_validate(raw))[0]


def falco_event(**fields: Any) -> AlertEvent:
    raw = payload("falcosidekick-terminal-shell.json")
    for key, value in fields.items():
        if key in ("rule", "priority", "uuid"):
            raw[key] = value
        elif value is None:
            raw["output_fields"].pop(key, None)
        else:
            raw["output_fields"][key] = value
    return from_falco(FalcoEvent.model_validate(raw))


def gate(clock: FakeClock, **limits: Any) -> AlertGate:
    defaults: dict[str, Any] = {"rate_per_second": 100.0, "burst": 100, "max_concurrent": 100}
    return AlertGate(limits=Limits(**(defaults | limits)), clock=clock)


CATCH_ALL = [policy("catch-all")]

MATCH_TABLE: list[tuple[str, dict[str, Any], AlertEvent, DecisionReason]] = [
    ("empty policy takes anything", {}, am_event(), R.CAPTURE),
    ("name listed", {"match": {"alertNames": ["CounterSecretLeak"]}}, am_event(), R.CAPTURE),
    ("name not listed", {"match": {"alertNames": ["Other"]}}, am_event(), R.NO_MATCHING_POLICY),
    (
        "source filter",
        {"match": {"sources": ["falco"]}},
        am_event(),
        R.NO_MATCHING_POLICY,
    ),
    ("severity allowed", {"match": {"severities": ["critical"]}}, am_event(), R.CAPTURE),
    (
        "severity not allowed",
        {"match": {"severities": ["page"]}},
        am_event(severity="warning"),
        R.NO_MATCHING_POLICY,
    ),
    (
        "custom severity label",
        {"match": {"severities": ["p1"], "severityLabel": "priority"}},
        am_event(priority="p1"),
        R.CAPTURE,
    ),
    (
        "matchLabels",
        {"match": {"alertLabels": {"matchLabels": {"team": "payments"}}}},
        am_event(team="payments"),
        R.CAPTURE,
    ),
    (
        "matchLabels miss",
        {"match": {"alertLabels": {"matchLabels": {"team": "payments"}}}},
        am_event(team="web"),
        R.NO_MATCHING_POLICY,
    ),
    (
        "NotIn holds when absent",
        {
            "match": {
                "alertLabels": {
                    "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]
                }
            }
        },
        am_event(),
        R.CAPTURE,
    ),
    (
        "DoesNotExist",
        {
            "match": {
                "alertLabels": {"matchExpressions": [{"key": "pod", "operator": "DoesNotExist"}]}
            }
        },
        am_event(),
        R.NO_MATCHING_POLICY,
    ),
    (
        "namespace allowed",
        {"match": {"namespaces": ["default"]}},
        am_event(),
        R.CAPTURE,
    ),
    (
        "namespace not in allow list",
        {"match": {"namespaces": ["prod"]}},
        am_event(),
        R.NAMESPACE_EXCLUDED,
    ),
    (
        "deny wins over allow",
        {"match": {"namespaces": ["default"], "excludedNamespaces": ["default"]}},
        am_event(),
        R.NAMESPACE_EXCLUDED,
    ),
    ("suspended policy", {"suspend": True}, am_event(), R.NO_MATCHING_POLICY),
    ("no pod label", {}, am_event(pod=""), R.NO_POD),
    ("pod but no namespace", {}, am_event(namespace=""), R.NO_NAMESPACE),
    ("alerted container unknown", {}, am_event(container=""), R.NO_CONTAINER),
    (
        "all containers needs no container label",
        {"capture": {"containers": "All"}},
        am_event(container=""),
        R.CAPTURE,
    ),
    (
        "falco rule",
        {"match": {"alertNames": ["Terminal shell in container"]}},
        falco_event(),
        R.CAPTURE,
    ),
    (
        "falco priority at minimum",
        {"match": {"minimumPriority": "Notice"}},
        falco_event(),
        R.CAPTURE,
    ),
    (
        "falco priority below minimum",
        {"match": {"minimumPriority": "Warning"}},
        falco_event(),
        R.NO_MATCHING_POLICY,
    ),
    (
        "falco selector on output fields",
        {"match": {"alertLabels": {"matchLabels": {"user.name": "root"}}}},
        falco_event(),
        R.CAPTURE,
    ),
    (
        "falco event on the host",
        {},
        falco_event(**{"container.id": "host", "container.full_id": "host"}),
        R.NO_POD,
    ),
    ("falco event with no pod", {}, falco_event(**{"k8s.pod.name": None}), R.NO_POD),
    (
        "falco <NA> pod is no pod",
        {},
        falco_event(**{"k8s.pod.name": "<NA>"}),
        R.NO_POD,
    ),
    (
        "falco test rule",
        {},
        from_falco(FalcoEvent.model_validate(payload("falcosidekick-test-rule.json"))),
        R.TEST_EVENT,
    ),
    (
        "resolved alert",
        {},
        from_alertmanager(
            AlertmanagerWebhook.model_validate(payload("alertmanager-one-resolved.json"))
        )[0],
        R.RESOLVED,
    ),
]


@pytest.mark.parametrize(
    ("spec", "event", "expected"),
    [row[1:] for row in MATCH_TABLE],
    ids=[row[0] for row in MATCH_TABLE],
)
def test_decision_table(
    clock: FakeClock, spec: dict[str, Any], event: AlertEvent, expected: DecisionReason
) -> None:
    decision = gate(clock).decide(event, [policy("p", **copy.deepcopy(spec))])
    assert decision.reason is expected, decision.message
    assert decision.message


def test_no_policy_at_all_captures_nothing(clock: FakeClock) -> None:
    assert gate(clock).decide(am_event(), []).reason is R.NO_MATCHING_POLICY


def test_first_matching_policy_by_name_decides(clock: FakeClock) -> None:
    policies = [
        policy("b-all", capture={"containers": "All"}),
        policy("a-named", match={"alertNames": ["CounterSecretLeak"]}),
    ]
    decision = gate(clock).decide(am_event(), policies)
    assert decision.policy is not None and decision.policy.name == "a-named"
    assert decision.containers == ("counter",)


def test_target_and_containers_from_alertmanager_labels(clock: FakeClock) -> None:
    decision = gate(clock).decide(am_event(), CATCH_ALL)
    assert decision.target is not None
    assert (decision.target.namespace, decision.target.pod) == ("default", "counter")
    assert decision.containers == ("counter",)


def test_alertmanager_mapping_labels_are_configurable(clock: FakeClock) -> None:
    mapping = TargetMapping(namespace_label="kubernetes_namespace", pod_label="kubernetes_pod_name")
    g = AlertGate(limits=Limits(), mapping=mapping, clock=clock)
    event = am_event(
        kubernetes_namespace="shop", kubernetes_pod_name="cart-1", namespace="", pod=""
    )
    decision = g.decide(event, CATCH_ALL)
    assert decision.target is not None
    assert (decision.target.namespace, decision.target.pod) == ("shop", "cart-1")


def test_falco_prefers_full_container_id(clock: FakeClock) -> None:
    event = falco_event(**{"container.name": None})
    decision = gate(clock).decide(event, CATCH_ALL)
    assert decision.reason is R.CAPTURE
    assert decision.target is not None
    assert decision.target.container is None
    assert decision.target.container_id is not None and len(decision.target.container_id) == 64
    short = gate(clock).decide(
        falco_event(**{"container.name": None, "container.full_id": None}), CATCH_ALL
    )
    assert short.target is not None and short.target.container_id == "3ad7b26ded6d"


def test_resend_of_the_same_alert_is_a_duplicate(clock: FakeClock) -> None:
    g = gate(clock)
    event = am_event()
    assert g.decide(event, CATCH_ALL).reason is R.CAPTURE
    clock.advance(3600)
    assert g.decide(event, CATCH_ALL).reason is R.DUPLICATE


def test_dedupe_key_expires(clock: FakeClock) -> None:
    g = gate(clock, dedupe_ttl_seconds=60)
    event = am_event()
    g.decide(event, [policy("p", cooldownSeconds=0)])
    clock.advance(61)
    assert g.decide(event, [policy("p", cooldownSeconds=0)]).reason is R.CAPTURE


def test_new_firing_of_same_fingerprint_is_not_a_duplicate_but_cooled_down(
    clock: FakeClock,
) -> None:
    g = gate(clock)
    raw = payload("alertmanager-firing-group.json")
    first = from_alertmanager(AlertmanagerWebhook.model_validate(raw))[0]
    raw["alerts"][0]["startsAt"] = "2026-11-28T13:30:00Z"
    refired = from_alertmanager(AlertmanagerWebhook.model_validate(raw))[0]
    pol = [policy("p", cooldownSeconds=600)]
    assert g.decide(first, pol).reason is R.CAPTURE
    clock.advance(10)
    assert g.decide(refired, pol).reason is R.COOLDOWN
    clock.advance(600)
    assert g.decide(refired, pol).reason is R.DUPLICATE  # cooldown answer was final


def test_cooldown_is_per_pod(clock: FakeClock) -> None:
    g = gate(clock)
    events = from_alertmanager(
        AlertmanagerWebhook.model_validate(payload("alertmanager-firing-group.json"))
    )
    other_alert_same_pod = am_event(alertname="CounterCpuHigh")
    assert [g.decide(e, CATCH_ALL).reason for e in events] == [R.CAPTURE, R.CAPTURE]
    assert g.decide(other_alert_same_pod, CATCH_ALL).reason is R.COOLDOWN


def test_rate_limit_is_a_token_bucket(clock: FakeClock) -> None:
    g = gate(clock, rate_per_second=0.5, burst=2)
    pol = [policy("p", cooldownSeconds=0)]
    reasons = [g.decide(am_event(pod=f"p{i}"), pol).reason for i in range(4)]
    assert reasons == [R.CAPTURE, R.CAPTURE, R.RATE_LIMITED, R.RATE_LIMITED]
    clock.advance(2.0)  # one token back
    assert g.decide(am_event(pod="p9"), pol).reason is R.CAPTURE
    assert g.decide(am_event(pod="p10"), pol).reason is R.RATE_LIMITED


def test_held_back_alert_is_retried_not_deduped(clock: FakeClock) -> None:
    g = gate(clock, rate_per_second=1.0, burst=1)
    assert g.decide(am_event(pod="a"), CATCH_ALL).reason is R.CAPTURE
    held = am_event(pod="b")
    assert g.decide(held, CATCH_ALL).reason is R.RATE_LIMITED
    clock.advance(1.0)
    assert g.decide(held, CATCH_ALL).reason is R.CAPTURE


def test_over_the_cap_an_alert_is_queued_not_refused(clock: FakeClock) -> None:
    """Issue 19: a burst of distinct alerts over the cap queues; Falco never resends."""
    g = gate(clock, max_concurrent=2, max_queued=2)
    reasons = [g.decide(am_event(pod=f"p{i}"), CATCH_ALL).reason for i in range(5)]
    assert reasons == [R.CAPTURE, R.CAPTURE, R.QUEUED, R.QUEUED, R.QUEUE_FULL]
    queued = g.decide(am_event(pod="p9"), CATCH_ALL)
    assert queued.reason is R.QUEUE_FULL and not queued.capture


def test_queued_alerts_are_captures_and_final(clock: FakeClock) -> None:
    g = gate(clock, max_concurrent=1)
    g.decide(am_event(pod="a"), CATCH_ALL)
    event = am_event(pod="b")
    queued = g.decide(event, CATCH_ALL)
    assert queued.reason is R.QUEUED and queued.capture
    assert g.decide(event, CATCH_ALL).reason is R.DUPLICATE
    assert g.decide(am_event(pod="b", severity="page"), CATCH_ALL).reason is R.COOLDOWN


def test_queue_full_is_not_remembered_so_a_resend_can_capture(clock: FakeClock) -> None:
    g = gate(clock, max_concurrent=1, max_queued=0)
    first = g.decide(am_event(pod="a"), CATCH_ALL)
    refused = am_event(pod="b")
    assert g.decide(refused, CATCH_ALL).reason is R.QUEUE_FULL
    clock.advance(60)
    g.active.reconcile(set())  # the first capture is past its kubelet call
    assert first.capture and g.decide(refused, CATCH_ALL).reason is R.CAPTURE


def test_slots_count_captures_until_the_cluster_says_they_are_done(clock: FakeClock) -> None:
    g = gate(clock, max_concurrent=2)
    first = g.decide(am_event(pod="a"), CATCH_ALL)
    second = g.decide(am_event(pod="b"), CATCH_ALL)
    assert g.decide(am_event(pod="c"), CATCH_ALL).reason is R.QUEUED
    # The cluster reports the first done (no longer holding a slot) after the grace period.
    clock.advance(60)
    g.active.reconcile({second.capture_key})
    assert g.decide(am_event(pod="d"), CATCH_ALL).reason is R.CAPTURE
    assert first.capture and len(g.active) == 2


def test_reconcile_keeps_captures_too_new_to_be_listed(clock: FakeClock) -> None:
    g = gate(clock, max_concurrent=1)
    g.decide(am_event(pod="a"), CATCH_ALL)
    g.active.reconcile(set())  # a list taken before the create landed
    assert g.decide(am_event(pod="b"), CATCH_ALL).reason is R.QUEUED


def test_undo_lets_the_retry_capture(clock: FakeClock) -> None:
    g = gate(clock, rate_per_second=0.0, burst=1)
    event = am_event()
    decision = g.decide(event, CATCH_ALL)
    assert decision.capture
    g.undo(decision)  # the API server refused the create; the sender will retry
    assert g.decide(event, CATCH_ALL).reason is R.CAPTURE


def test_resolved_and_test_events_leave_no_trace(clock: FakeClock) -> None:
    g = gate(clock)
    resolved = from_alertmanager(
        AlertmanagerWebhook.model_validate(payload("alertmanager-one-resolved.json"))
    )[0]
    assert g.decide(resolved, CATCH_ALL).reason is R.RESOLVED
    firing = from_alertmanager(
        AlertmanagerWebhook.model_validate(payload("alertmanager-firing-group.json"))
    )[0]
    assert g.decide(firing, CATCH_ALL).reason is R.CAPTURE


def test_a_confirmed_capture_ends_with_the_first_list_begun_after_its_create(
    clock: FakeClock,
) -> None:
    g = gate(clock, max_concurrent=1)
    decision = g.decide(am_event(pod="a"), CATCH_ALL)
    listed_before = clock()
    clock.advance(0.5)
    g.active.confirm(decision.capture_key)  # the create returned
    g.active.reconcile(set(), listed_before)  # a list begun before the create: keeps it
    assert len(g.active) == 1
    clock.advance(0.5)
    g.active.reconcile(set(), clock())  # begun after, and it is not active: it finished
    assert len(g.active) == 0
    assert g.decide(am_event(pod="b"), CATCH_ALL).reason is R.CAPTURE
