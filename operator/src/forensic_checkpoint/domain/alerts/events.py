"""One shape for an alert, whichever system sent it.

The receiver turns an Alertmanager notification (many alerts) or a Falco event (one) into
:class:`AlertEvent` values; everything after that (policy match, target mapping, limits) is
source-agnostic except where a source's own semantics differ (priority vs severity label).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from forensic_checkpoint.api.alerts import (
    FALCOSIDEKICK_TEST_RULE,
    AlertmanagerAlert,
    AlertmanagerWebhook,
    FalcoEvent,
    FalcoPriority,
)
from forensic_checkpoint.api.policy import AlertSource


@dataclass(frozen=True)
class AlertEvent:
    source: AlertSource
    #: Alertmanager ``alertname`` label or the Falco rule.
    name: str
    #: What the sender re-sends unchanged: ``fingerprint@startsAt``, or the Falco ``uuid``.
    dedupe_key: str
    #: Alertmanager fingerprint or Falco uuid (or our hash of the event when it has none).
    fingerprint: str
    firing: bool
    #: Alert labels, or Falco output fields as text (absent/null fields left out).
    labels: Mapping[str, str]
    starts_at: datetime | None = None
    #: Alertmanager: the policy reads the severity label itself; Falco: the event's priority.
    priority: FalcoPriority | None = None
    #: Falco: the node the event came from; empty for Alertmanager.
    hostname: str = ""
    is_test: bool = False
    #: The alert as received (JSON-ready), for the size-capped copy on the ForensicCheckpoint.
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def severity(self) -> str:
        return self.priority.label if self.priority is not None else self.labels.get("severity", "")


def from_alertmanager(payload: AlertmanagerWebhook) -> list[AlertEvent]:
    """Every alert of the notification, in order; per-alert ``status`` decides firing."""
    return [_am_event(payload, alert) for alert in payload.alerts]


def _am_event(payload: AlertmanagerWebhook, alert: AlertmanagerAlert) -> AlertEvent:
    starts = alert.starts_at.isoformat()
    raw = alert.model_dump(mode="json", by_alias=True)
    raw["receiver"] = payload.receiver
    raw["groupKey"] = payload.group_key
    return AlertEvent(
        source=AlertSource.ALERTMANAGER,
        name=alert.alert_name,
        dedupe_key=f"alertmanager:{alert.fingerprint}@{starts}",
        fingerprint=alert.fingerprint,
        firing=alert.status == "firing",
        labels=dict(alert.labels),
        starts_at=alert.starts_at,
        raw=raw,
    )


def from_falco(event: FalcoEvent) -> AlertEvent:
    raw = event.model_dump(mode="json", by_alias=True)
    raw["priority"] = event.priority.label
    fingerprint = event.uuid or _event_hash(event)
    labels = {key: text for key in event.output_fields if (text := event.field(key)) is not None}
    return AlertEvent(
        source=AlertSource.FALCO,
        name=event.rule,
        dedupe_key=f"falco:{fingerprint}",
        fingerprint=fingerprint,
        firing=True,  # Falco events have no resolution
        labels=labels,
        starts_at=event.time,
        priority=event.priority,
        hostname=event.hostname,
        is_test=event.rule == FALCOSIDEKICK_TEST_RULE,
        raw=raw,
    )


def _event_hash(event: FalcoEvent) -> str:
    """Falco posting straight to us sends no uuid; the same event re-sent hashes the same."""
    material = "\x00".join((event.rule, event.time.isoformat(), event.hostname, event.output))
    return hashlib.sha256(material.encode()).hexdigest()[:32]
