"""The ForensicCheckpoint built for a capture decision: deterministic name, labels, caps."""

from __future__ import annotations

import json
import re

import pytest
from tests.alerts.helpers import FakeClock, payload, policy

from forensic_checkpoint.api.alerts import AlertmanagerWebhook, FalcoEvent
from forensic_checkpoint.api.base import DNS_SUBDOMAIN_PATTERN
from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.domain.alerts.capture import (
    ANNOTATION_ALERT,
    LABEL_ALERT_NAME,
    LABEL_FINGERPRINT,
    LABEL_SOURCE,
    build_checkpoint,
    capped_alert_copy,
    checkpoint_name,
    label_value,
)
from forensic_checkpoint.domain.alerts.events import from_alertmanager, from_falco
from forensic_checkpoint.domain.alerts.policy import AlertGate, Decision, Limits

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
POLICY = policy(
    "secrets",
    capture={"analysis": {"searches": ["SECRET"], "regexes": ["tok_[a-z]+"]}, "timeoutSeconds": 60},
)


def decide(clock: FakeClock, raw: dict[str, object], falco: bool = False) -> Decision:
    events = (
        [from_falco(FalcoEvent.model_validate(raw))]
        if falco
        else from_alertmanager(AlertmanagerWebhook.model_validate(raw))
    )
    decision = AlertGate(Limits(), clock=clock).decide(events[0], [POLICY])
    assert decision.capture, decision.message
    return decision


def test_alertmanager_capture_builds_a_valid_checkpoint(clock: FakeClock) -> None:
    fc = build_checkpoint(decide(clock, payload("alertmanager-firing-group.json")))
    body = fc.to_kube()
    again = ForensicCheckpoint.model_validate(body)  # round-trips through the CRD model
    assert again.spec.pod_name == "counter"
    assert again.spec.containers == ["counter"]
    assert again.spec.timeout_seconds == 60
    assert again.spec.analysis.searches == ["SECRET"]
    assert again.spec.reason is not None and again.spec.reason.alert is not None
    assert again.spec.reason.alert.fingerprint == "e59b47998d601dcf"
    assert again.spec.reason.alert.policy == "secrets"
    meta = body["metadata"]
    assert meta["namespace"] == "default"
    assert meta["labels"][LABEL_SOURCE] == "alertmanager"
    assert meta["labels"][LABEL_ALERT_NAME] == "CounterSecretLeak"
    assert meta["labels"][LABEL_FINGERPRINT] == "e59b47998d601dcf"
    copy = json.loads(meta["annotations"][ANNOTATION_ALERT])
    assert copy["labels"]["pod"] == "counter"
    assert re.match(DNS_SUBDOMAIN_PATTERN, meta["name"])
    assert all(LABEL_VALUE.match(v) for v in meta["labels"].values())


def test_name_is_stable_for_the_same_alert_and_differs_for_another(clock: FakeClock) -> None:
    raw = payload("alertmanager-firing-group.json")
    first = checkpoint_name(decide(clock, raw))
    assert checkpoint_name(decide(FakeClock(), raw)) == first
    raw["alerts"][0]["startsAt"] = "2026-11-28T14:00:00Z"
    assert checkpoint_name(decide(FakeClock(), raw)) != first
    assert first.startswith("alert-counter-")


def test_falco_rule_names_become_valid_label_values(clock: FakeClock) -> None:
    fc = build_checkpoint(decide(clock, payload("falcosidekick-terminal-shell.json"), falco=True))
    labels = fc.metadata["labels"]
    assert labels[LABEL_ALERT_NAME] == "Terminal_shell_in_container"
    assert fc.metadata["annotations"]["forensic-checkpoint.dev/alert-name"] == (
        "Terminal shell in container"
    )
    assert all(LABEL_VALUE.match(v) for v in labels.values())


@pytest.mark.parametrize(
    "text",
    ["x" * 200, "Rule: (write below /etc) — ünïcode!", "-leading.and.trailing-", "a b" * 40],
)
def test_label_value_is_always_valid(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value), value


def test_long_distinct_names_stay_distinct() -> None:
    assert label_value("x" * 100 + "a") != label_value("x" * 100 + "b")


def test_alert_copy_is_capped_and_stays_json() -> None:
    raw = payload("falcosidekick-terminal-shell.json")
    raw["output"] = "A" * 20_000
    raw["output_fields"] = {f"field.{i}": "v" * 300 for i in range(100)}
    text = capped_alert_copy(raw, max_bytes=4096)
    assert len(text.encode()) <= 4096
    kept = json.loads(text)
    assert kept["truncated"] is True
    assert kept["rule"] == "Terminal shell in container"
    assert kept["uuid"] == raw["uuid"]


def test_alert_copy_keeps_its_cap_even_when_the_essentials_are_large() -> None:
    raw = dict.fromkeys(("rule", "output", "uuid", "hostname", "source", "time"), "y" * 5000)
    text = capped_alert_copy(raw, max_bytes=1024)
    assert len(text.encode()) <= 1024
    assert json.loads(text)["uuid"] == "y" * 64


def test_small_alert_copy_is_verbatim() -> None:
    raw = payload("falcosidekick-terminal-shell.json")
    assert json.loads(capped_alert_copy(raw)) == raw


def test_a_non_capture_decision_builds_nothing(clock: FakeClock) -> None:
    raw = payload("alertmanager-one-resolved.json")
    event = from_alertmanager(AlertmanagerWebhook.model_validate(raw))[0]
    decision = AlertGate(Limits(), clock=clock).decide(event, [POLICY])
    with pytest.raises(ValueError, match="not a capture"):
        build_checkpoint(decision)
