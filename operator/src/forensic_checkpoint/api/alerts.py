"""Wire models of the alert payloads the receiver accepts.

Two real formats, modelled from their senders' source (see docs/alerts.md):

* Prometheus Alertmanager's webhook notification, payload ``version`` "4"
  (alertmanager ``notify/webhook/webhook.go`` + ``template/template.go``).
* Falcosidekick's webhook output, its ``types.FalcoPayload``.

Both are tolerant of fields we do not know (senders add fields between releases; rejecting them
would silently switch off capture after an upgrade) and strict on the fields the decisions
depend on: a missing ``fingerprint`` or an unknown Falco ``priority`` is a 400, not a guess.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

#: Alertmanager only ever sends this version of the webhook payload (since 0.6).
ALERTMANAGER_PAYLOAD_VERSION = "4"


class _Tolerant(BaseModel):
    """Unknown fields are kept (for the size-capped copy on the CR), never rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


AlertStatus = Literal["firing", "resolved"]


class AlertmanagerAlert(_Tolerant):
    """One alert of a webhook notification; its own ``status`` is authoritative."""

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    #: The zero time ``0001-01-01T00:00:00Z`` while the alert fires.
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1)

    @property
    def alert_name(self) -> str:
        return self.labels.get("alertname", "")


class AlertmanagerWebhook(_Tolerant):
    """The body Alertmanager POSTs to a ``webhook_configs`` receiver."""

    version: Literal["4"]
    group_key: str = Field(alias="groupKey")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")
    #: ``resolved`` only when every alert of the group resolved; per-alert status decides.
    status: AlertStatus
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[AlertmanagerAlert]


class FalcoPriority(enum.IntEnum):
    """Falco's priorities, ordered so that ``>=`` means "at least as severe"."""

    DEBUG = 0
    INFORMATIONAL = 1
    NOTICE = 2
    WARNING = 3
    ERROR = 4
    CRITICAL = 5
    ALERT = 6
    EMERGENCY = 7

    @classmethod
    def parse(cls, value: object) -> FalcoPriority:
        """Case-insensitive, as Falcosidekick itself parses them; ``Info`` is Falco's alias."""
        if isinstance(value, FalcoPriority):
            return value
        if not isinstance(value, str):
            raise ValueError(f"priority must be a string, not {type(value).__name__}")
        name = value.strip().upper()
        name = {"INFO": "INFORMATIONAL", "WARN": "WARNING", "ERR": "ERROR"}.get(name, name)
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown Falco priority {value!r}") from None

    @property
    def label(self) -> str:
        """The spelling Falcosidekick marshals (``Warning``, ``Informational``...)."""
        return self.name.capitalize()


#: Output field values: Falco emits strings, numbers, booleans and nulls (absent container info).
OutputFieldValue = str | int | float | bool | list[Any] | None


class FalcoEvent(_Tolerant):
    """One Falco event as Falcosidekick forwards it (its ``Check()`` rules apply)."""

    #: Added by Falcosidekick; absent when Falco posts straight to us (then we hash the event).
    uuid: str | None = None
    output: str
    priority: Annotated[FalcoPriority, BeforeValidator(FalcoPriority.parse)]
    rule: str = Field(min_length=1)
    time: datetime
    source: str = ""
    hostname: str = ""
    tags: list[str] = Field(default_factory=list)
    output_fields: dict[str, OutputFieldValue] = Field(min_length=1)

    @field_validator("tags", mode="before")
    @classmethod
    def _null_tags(cls, value: object) -> object:
        return [] if value is None else value

    def field(self, name: str) -> str | None:
        """An output field as text, or None when absent, null, empty or Falco's ``<NA>``."""
        value = self.output_fields.get(name)
        if value is None or isinstance(value, list):
            return None
        text = str(value).strip()
        return None if text in ("", "<NA>", "N/A") else text


#: The rule name of the event Falcosidekick's ``/test`` endpoint emits.
FALCOSIDEKICK_TEST_RULE = "Test rule"
