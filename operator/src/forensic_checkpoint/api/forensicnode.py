"""The ``ForensicNode`` custom resource: one per node, written by that node's agent.

The operator finds the agent on a pod's node here (``status.agent.endpoint``) and treats a
heartbeat older than :data:`HEARTBEAT_STALE_SECONDS` as ``AgentUnavailable``. Capture readiness
(feature gate, runtime, CRIU configuration, kubelet authorisation) is reported in ``checks`` and
the ``Ready`` condition.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field

from forensic_checkpoint.api.base import (
    CrdInfo,
    KubeModel,
    PrinterColumn,
    Reason,
    RootModel,
    ShortText,
)
from forensic_checkpoint.api.conditions import Condition

#: The agent refreshes its heartbeat this often ...
HEARTBEAT_INTERVAL_SECONDS = 10
#: ... and the operator gives up on an agent whose heartbeat is older than this.
HEARTBEAT_STALE_SECONDS = 45

MAX_CHECKS = 32
MAX_CONDITIONS = 16

_Endpoint = Annotated[str, Field(max_length=512, pattern=r"^https://[^/\s]+$")]
_Short = Annotated[str, Field(max_length=256)]


class AgentStatus(KubeModel):
    """Where the node's agent listens, and that it is alive."""

    endpoint: _Endpoint = Field(description="https://<host>:<port> of the agent's API.")
    heartbeat_time: datetime = Field(description="Refreshed every ~10 s while the agent runs.")
    version: _Short = ""
    """The agent's version."""
    pod_name: _Short = Field(default="", description="The agent's own pod, when in a cluster.")
    pod_namespace: _Short = ""
    """The namespace of the agent's pod."""
    started_at: datetime | None = None
    """When the agent process started."""
    kubelet_endpoint: _Short = Field(
        default="", description="https://<InternalIP>:<kubelet port> the agent checkpoints with."
    )
    queue_depth: int = Field(
        default=0,
        ge=0,
        description="Captures waiting for a worker: to call the kubelet, or to be analysed.",
    )
    captures_in_progress: int = Field(
        default=0, ge=0, description="Captures a capture or analysis worker holds now."
    )
    certificate_not_after: datetime | None = Field(
        default=None,
        description="When the serving certificate the agent presents (for "
        "<node>.agents.forensic-checkpoint.dev) expires.",
    )
    certificate_pending: ShortText = Field(
        default="",
        description="Set while the agent has no serving certificate yet "
        "(--serving-certificate=csr): what it waits for. The operator does not call it then.",
    )


class CheckStatus(StrEnum):
    PASSED = "Pass"
    FAILED = "Fail"
    UNKNOWN = "Unknown"


class ReadinessCheck(KubeModel):
    """One preflight check of the node's ability to checkpoint (filled by the readiness probe)."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    """The check: KubeletTLS, KubeletAuthentication, FeatureGate, CheckpointAuthorization,
    CRIUConfig, ...
    """
    status: CheckStatus
    """Pass, Fail or Unknown."""
    reason: Reason | None = None
    """CamelCase reason of the result."""
    message: ShortText = ""
    """What the check found."""
    remediation: ShortText = ""
    """For a failure: what to do."""
    last_probe_time: datetime | None = None
    """When the agent last ran the check."""


class ForensicNodeStatus(KubeModel):
    agent: AgentStatus | None = None
    """Where the node's agent listens, and that it is alive (its heartbeat)."""
    runtime: _Short = Field(
        default="",
        description="The node's container runtime and version, as the Node reports it "
        "(status.nodeInfo.containerRuntimeVersion).",
    )
    checks: list[ReadinessCheck] = Field(
        default_factory=list,
        max_length=MAX_CHECKS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """The readiness checks of the agent's last round (docs/capture-readiness.md)."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Ready: whether the node can take a checkpoint (Unknown when the agent stopped heartbeating).
    """


#: ``kubectl get forensicnodes`` columns: (title, readiness check name) — each shows the check's
#: Pass/Fail/Unknown; ``forensic-checkpoint nodes`` shows the failing reasons as well.
CHECK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TLS", "KubeletTLS"),
    ("AuthN", "KubeletAuthentication"),
    ("Gate", "FeatureGate"),
    ("AuthZ", "CheckpointAuthorization"),
    ("CRIU", "CRIUConfig"),
)


def _check_status(check: str) -> str:
    return f'.status.checks[?(@.name=="{check}")].status'


class ForensicNode(RootModel):
    """A node's forensic agent and its capture readiness. Name = the node's name."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="ForensicNode",
        plural="forensicnodes",
        singular="forensicnode",
        scope="Cluster",
        short_names=("fnode",),
        printer_columns=(
            PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status'),
            PrinterColumn("Reason", '.status.conditions[?(@.type=="Ready")].reason'),
            PrinterColumn("Runtime", ".status.runtime"),
            *(PrinterColumn(title, _check_status(check)) for title, check in CHECK_COLUMNS),
            PrinterColumn("Heartbeat", ".status.agent.heartbeatTime", type="date"),
            PrinterColumn("Endpoint", ".status.agent.endpoint", priority=1),
            PrinterColumn("Version", ".status.agent.version", priority=1),
            PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
        ),
    )

    kind: str = "ForensicNode"
    status: ForensicNodeStatus | None = None
    """The agent's endpoint and heartbeat, the node's readiness checks and its Ready
    condition."""
