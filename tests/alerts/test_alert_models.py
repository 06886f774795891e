"""The wire models accept the real payloads and reject what the decisions cannot do without."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from tests.alerts.helpers import payload

from forensic_checkpoint.api.alerts import AlertmanagerWebhook, FalcoEvent, FalcoPriority
from forensic_checkpoint.api.policy import AlertSource
from forensic_checkpoint.domain.alerts.events import from_alertmanager, from_falco


def test_real_alertmanager_group_parses_into_one_event_per_alert() -> None:
    body = AlertmanagerWebhook.model_validate(payload("alertmanager-firing-group.json"))
    events = from_alertmanager(body)
    assert [e.labels["pod"] for e in events] == ["counter", "counter-2"]
    first = events[0]
    assert first.source is AlertSource.ALERTMANAGER
    assert first.name == "CounterSecretLeak"
    assert first.fingerprint == "e59b47998d601dcf"
    assert first.dedupe_key == "alertmanager:e59b47998d601dcf@2026-11-28T12:51:29.542550+00:00"
    assert first.firing
    assert first.severity == "critical"
    assert first.raw["receiver"] == "forensics"


def test_per_alert_status_wins_over_group_status() -> None:
    body = AlertmanagerWebhook.model_validate(payload("alertmanager-one-resolved.json"))
    assert body.status == "firing"
    assert [e.firing for e in from_alertmanager(body)] == [False, True]


def test_unknown_fields_are_tolerated_and_kept() -> None:
    raw = payload("alertmanager-firing-group.json")
    raw["someFutureField"] = {"x": 1}
    raw["alerts"][0]["newAlertField"] = "kept"
    body = AlertmanagerWebhook.model_validate(raw)
    assert from_alertmanager(body)[0].raw["newAlertField"] == "kept"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["alerts"][0].pop("fingerprint"), "fingerprint"),
        (lambda d: d["alerts"][0].update(fingerprint=""), "fingerprint"),
        (lambda d: d["alerts"][0].update(status="pending"), "status"),
        (lambda d: d.update(version="3"), "version"),
        (lambda d: d["alerts"][0].update(startsAt="yesterday"), "startsAt"),
        (lambda d: d["alerts"][0]["labels"].update(pod=7), "pod"),
        (lambda d: d.pop("alerts"), "alerts"),
    ],
)
def test_alertmanager_schema_violations_are_rejected(mutate: object, field: str) -> None:
    raw = payload("alertmanager-firing-group.json")
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(ValidationError) as info:
        AlertmanagerWebhook.model_validate(raw)
    assert field in str(info.value)


def test_falco_event_maps_fields_and_priority() -> None:
    event = from_falco(FalcoEvent.model_validate(payload("falcosidekick-terminal-shell.json")))
    assert event.source is AlertSource.FALCO
    assert event.name == "Terminal shell in container"
    assert event.dedupe_key == "falco:3b1c6f3e-1f0a-4a57-9d2e-6c1f2b8a9e01"
    assert event.priority is FalcoPriority.NOTICE
    assert event.labels["proc.tty"] == "34816"  # numbers become text for selectors
    assert event.hostname == "worker-1"
    assert not event.is_test


def test_falcosidekick_test_event_is_flagged() -> None:
    event = from_falco(FalcoEvent.model_validate(payload("falcosidekick-test-rule.json")))
    assert event.is_test


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Warning", FalcoPriority.WARNING),
        ("warning", FalcoPriority.WARNING),
        ("CRITICAL", FalcoPriority.CRITICAL),
        ("Informational", FalcoPriority.INFORMATIONAL),
        ("info", FalcoPriority.INFORMATIONAL),
    ],
)
def test_falco_priority_parses_case_insensitively(text: str, expected: FalcoPriority) -> None:
    assert FalcoPriority.parse(text) is expected


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(priority="Severe"),
        lambda d: d.pop("rule"),
        lambda d: d.update(output_fields={}),
        lambda d: d.update(time="not a time"),
    ],
)
def test_falco_schema_violations_are_rejected(mutate: object) -> None:
    raw = payload("falcosidekick-terminal-shell.json")
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(ValidationError):
        FalcoEvent.model_validate(raw)


def test_falco_event_without_uuid_dedupes_on_its_content() -> None:
    raw = payload("falcosidekick-terminal-shell.json")
    raw.pop("uuid")
    first = from_falco(FalcoEvent.model_validate(raw))
    again = from_falco(FalcoEvent.model_validate(raw))
    raw["time"] = "2026-07-01T13:45:11Z"
    later = from_falco(FalcoEvent.model_validate(raw))
    assert first.dedupe_key == again.dedupe_key != later.dedupe_key
