"""The ``ForensicCapturePolicy`` custom resource: which alerts become ForensicCheckpoints.

Cluster scoped, on purpose: the receiver takes alerts for every namespace, and choosing which
pods may be frozen and dumped is a security team's decision, not a tenant's. A namespaced policy
would let anyone who can write to a namespace switch capture of their own pods off (or point it
at a neighbour's through the alert labels). The namespace allow and deny lists in the spec say
explicitly where a policy applies.

Policies are evaluated in name order; the first that matches an alert decides. A policy never
makes the receiver guess a pod: alerts that name none are answered and counted, never captured.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field

from forensic_checkpoint.api.base import CrdInfo, DnsLabel, KubeModel, PrinterColumn, RootModel
from forensic_checkpoint.api.conditions import Condition
from forensic_checkpoint.api.forensiccheckpoint import (
    DEFAULT_TIMEOUT_SECONDS,
    MAX_TIMEOUT_SECONDS,
    AnalysisSpec,
)

MAX_NAMES = 64
MAX_NAMESPACES = 256
MAX_SELECTOR_TERMS = 16
DEFAULT_COOLDOWN_SECONDS = 600

_Text = Annotated[str, Field(min_length=1, max_length=256)]
_LabelKey = Annotated[str, Field(min_length=1, max_length=317)]


class AlertSource(StrEnum):
    ALERTMANAGER = "alertmanager"
    FALCO = "falco"


class ContainerSelection(StrEnum):
    """``Alerted``: only the container the alert names; ``All``: every container of the pod."""

    ALERTED = "Alerted"
    ALL = "All"


class FalcoPriorityName(StrEnum):
    """Falco's priorities as Falcosidekick spells them (see :class:`api.alerts.FalcoPriority`)."""

    EMERGENCY = "Emergency"
    ALERT = "Alert"
    CRITICAL = "Critical"
    ERROR = "Error"
    WARNING = "Warning"
    NOTICE = "Notice"
    INFORMATIONAL = "Informational"
    DEBUG = "Debug"


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(KubeModel):
    key: _LabelKey
    """The label (or Falco output field) the requirement is about."""
    operator: SelectorOperator
    """In, NotIn, Exists or DoesNotExist."""
    values: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=MAX_NAMES
    )
    """The values for In and NotIn; empty for Exists and DoesNotExist."""


class LabelSelector(KubeModel):
    """Kubernetes label-selector semantics, applied to the alert's labels (Alertmanager) or its
    output fields (Falco, e.g. ``k8s.ns.name``); every term must hold."""

    match_labels: dict[_LabelKey, Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": MAX_SELECTOR_TERMS}
    )
    """Labels that must have exactly these values."""
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=MAX_SELECTOR_TERMS
    )
    """Requirements that must all hold."""


class PolicyMatch(KubeModel):
    """Which alerts this policy takes. Every non-empty field must hold; empty means any."""

    sources: list[AlertSource] = Field(
        default_factory=list,
        max_length=2,
        description="alertmanager, falco; empty means both.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    alert_names: list[_Text] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="Alertmanager alertname or Falco rule, exact.",
    )
    severities: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list,
        max_length=16,
        description="Alertmanager: allowed values of the severity label.",
    )
    severity_label: Annotated[str, Field(min_length=1, max_length=63)] = "severity"
    """Alertmanager: the label that holds the severity."""
    minimum_priority: FalcoPriorityName | None = Field(
        default=None, description="Falco: the least severe priority to capture on."
    )
    alert_labels: LabelSelector | None = None
    """A label selector on the alert's labels (Alertmanager) or output fields (Falco)."""
    namespaces: list[DnsLabel] = Field(
        default_factory=list,
        max_length=MAX_NAMESPACES,
        description="Namespaces to capture in; empty means all.",
    )
    excluded_namespaces: list[DnsLabel] = Field(
        default_factory=list,
        max_length=MAX_NAMESPACES,
        description="Namespaces never captured in; wins over namespaces.",
    )


class PolicyCapture(KubeModel):
    """What the created ForensicCheckpoint asks for."""

    containers: ContainerSelection = ContainerSelection.ALERTED
    """Alerted: only the container the alert names; All: every container of the pod."""
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    """What the analysis searches the checkpoint's memory for."""
    timeout_seconds: int = Field(default=DEFAULT_TIMEOUT_SECONDS, ge=1, le=MAX_TIMEOUT_SECONDS)
    """spec.timeoutSeconds of the created ForensicCheckpoint."""


class ForensicCapturePolicySpec(KubeModel):
    match: PolicyMatch = Field(default_factory=PolicyMatch)
    """Which alerts this policy takes; every non-empty field must hold."""
    capture: PolicyCapture = Field(default_factory=PolicyCapture)
    """What the ForensicCheckpoints it creates ask for."""
    cooldown_seconds: int = Field(
        default=DEFAULT_COOLDOWN_SECONDS,
        ge=0,
        le=7 * 24 * 3600,
        description="After a capture of a pod, alerts for the same pod are skipped this long.",
    )
    suspend: bool = Field(default=False, description="Match nothing (keeps the policy around).")


class ForensicCapturePolicyStatus(KubeModel):
    """What the alert receiver did with this policy (written by the operator, which runs it)."""

    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation of the spec the receiver last read."""
    conditions: list[Condition] = Field(default_factory=list, max_length=8)
    """Accepted: True once the receiver reads and uses this generation of the policy."""
    alerts_matched: int = Field(default=0, ge=0)
    """Alerts this policy was the first to match, since it was created (cooldown, rate and
    concurrency refusals included)."""
    captures_created: int = Field(default=0, ge=0)
    """ForensicCheckpoints the receiver created for those alerts (queued ones included)."""
    captures_queued: int = Field(default=0, ge=0)
    """Of those, how many were created over the concurrency cap: they waited in phase Queued
    for a slot, in the order the alerts arrived."""
    alerts_refused_queue_full: int = Field(default=0, ge=0)
    """Alerts refused because the capture queue was full (QueueFull); each also raised a
    Warning Event on this policy and the metric forensic_checkpoint_alerts_total."""
    last_match_time: datetime | None = None
    """When an alert last matched this policy."""
    last_capture: str | None = Field(default=None, max_length=317)
    """The last ForensicCheckpoint created for it, as namespace/name."""


class ForensicCapturePolicy(RootModel):
    """Which alerts (Alertmanager, Falcosidekick) the operator's alert receiver turns into
    ForensicCheckpoints, and what those ask for. Policies are evaluated in name order; the
    first that matches an alert decides."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="ForensicCapturePolicy",
        plural="forensiccapturepolicies",
        singular="forensiccapturepolicy",
        scope="Cluster",
        short_names=("fcpol",),
        status_subresource=True,
        printer_columns=(
            PrinterColumn("Containers", ".spec.capture.containers"),
            PrinterColumn("Cooldown", ".spec.cooldownSeconds", type="integer"),
            PrinterColumn("Suspend", ".spec.suspend", type="boolean"),
            PrinterColumn(
                "Matched",
                ".status.alertsMatched",
                type="integer",
                description="Alerts this policy matched first",
            ),
            PrinterColumn(
                "Captures",
                ".status.capturesCreated",
                type="integer",
                description="ForensicCheckpoints created for them",
            ),
            PrinterColumn(
                "Last match",
                ".status.lastMatchTime",
                type="date",
                priority=1,
                description="When an alert last matched",
            ),
            PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
        ),
    )

    kind: str = "ForensicCapturePolicy"
    spec: ForensicCapturePolicySpec = Field(default_factory=ForensicCapturePolicySpec)
    """Which alerts to take and what to capture for them."""
    status: ForensicCapturePolicyStatus | None = None
    """What the alert receiver did with this policy."""

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))
