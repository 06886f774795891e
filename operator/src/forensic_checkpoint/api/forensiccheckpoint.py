"""The ``ForensicCheckpoint`` custom resource: "checkpoint this pod and tell me what is inside".

The spec is immutable (CEL ``self == oldSelf``): a checkpoint is a one-off piece of evidence,
and a changed request would make the recorded status lie about what was captured.

The status is bounded. Each list is capped (see the ``MAX_*`` constants) and carries a total
count next to it; the full report stays on the node (``reportUrl``, or
``kubectl forensic report``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field

from forensic_checkpoint.api.base import (
    CrdInfo,
    DnsLabel,
    DnsSubdomain,
    KubeModel,
    PrinterColumn,
    Reason,
    RootModel,
    Sha256,
    ShortText,
)
from forensic_checkpoint.api.conditions import Condition
from forensic_checkpoint.api.custody import (
    CUSTODY_ENTRY_SCHEMA,
    CUSTODY_LIST_SCHEMA,
    CUSTODY_PRESENCE_RULE,
    MAX_CUSTODY_ENTRIES,
    CustodyEntry,
)

MAX_CONTAINERS = 16
MAX_SEARCHES = 32
MAX_PROCESSES = 20
MAX_SOCKETS = 20
MAX_PATHS = 10
MAX_HITS = 20
MAX_WARNINGS = 10
MAX_FINDINGS = 10
#: The CRIU log lines of a failed capture kept in the status (the agent sends up to 8 KiB).
MAX_CRIU_LOG_EXCERPT = 4096
DEFAULT_TIMEOUT_SECONDS = 120
MAX_TIMEOUT_SECONDS = 3600

_Pattern = Annotated[str, Field(min_length=1, max_length=256)]
_Label = Annotated[str, Field(max_length=256)]


# --- spec ----------------------------------------------------------------------------------


class AnalysisSpec(KubeModel):
    """What to look for in the checkpoint's memory. Matches are redacted unless ``reveal``."""

    searches: list[_Pattern] = Field(
        default_factory=list, max_length=MAX_SEARCHES, description="Literal strings to find."
    )
    regexes: list[_Pattern] = Field(
        default_factory=list,
        max_length=MAX_SEARCHES,
        description="Python regular expressions to find (bytes mode).",
    )
    reveal: bool = Field(
        default=False, description="Show matched secrets in clear text (off: redacted)."
    )


class AlertReference(KubeModel):
    """The alert that asked for this checkpoint (set by the alert receiver)."""

    source: Annotated[str, Field(min_length=1, max_length=63)] = Field(
        description="alertmanager, falco, ..."
    )
    name: _Label = Field(description="Alert or rule name.")
    fingerprint: _Label = ""
    starts_at: datetime | None = None
    severity: Annotated[str, Field(max_length=63)] = ""
    policy: Annotated[str, Field(max_length=253)] = Field(
        default="", description="The ForensicCapturePolicy that matched."
    )


class CaptureReasonSpec(KubeModel):
    """Why the checkpoint was taken: free text from a human, or the alert that caused it."""

    text: ShortText = ""
    alert: AlertReference | None = None


class ForensicCheckpointSpec(KubeModel):
    pod_name: DnsSubdomain = Field(description="The pod to checkpoint, in this namespace.")
    containers: list[DnsLabel] = Field(
        default_factory=list,
        max_length=MAX_CONTAINERS,
        description="Containers to checkpoint; empty means all of the pod's containers.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    timeout_seconds: int = Field(
        default=DEFAULT_TIMEOUT_SECONDS,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description=(
            "Seconds the kubelet gives the runtime for each container's checkpoint (?timeout=). "
            "It can only lengthen the kubelet's own deadline, its runtimeRequestTimeout (2 min "
            "by default): the kubelet raises a smaller value to that, so a dump may take that "
            "long whatever is set here."
        ),
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    reason: CaptureReasonSpec | None = None


# --- status --------------------------------------------------------------------------------


class Phase(StrEnum):
    PENDING = "Pending"
    CAPTURING = "Capturing"
    ANALYZING = "Analyzing"
    COMPLETED = "Completed"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED)


class ArchiveStatus(KubeModel):
    """The archive on the node (host path) as the agent verified it."""

    path: Annotated[str, Field(max_length=4096)]
    sha256: Sha256
    size_bytes: int = Field(ge=0)
    captured_at: datetime


class IdentitySummary(KubeModel):
    """Who the checkpoint belongs to, read from the archive itself (not from the request)."""

    runtime: Annotated[str, Field(max_length=63)] = ""
    pod_name: Annotated[str, Field(max_length=253)] = ""
    pod_namespace: Annotated[str, Field(max_length=63)] = ""
    container_name: Annotated[str, Field(max_length=253)] = ""
    image: Annotated[str, Field(max_length=1024)] = ""
    checkpointed_at: datetime | None = None
    matches_request: bool | None = Field(
        default=None, description="False when the archive names another pod or container."
    )


class ProcessSummary(KubeModel):
    pid: int
    ppid: int = 0
    comm: Annotated[str, Field(max_length=64)] = ""
    cmdline: Annotated[str, Field(max_length=512)] = ""


class SocketSummary(KubeModel):
    pid: int | None = None
    protocol: Annotated[str, Field(max_length=16)] = ""
    local: Annotated[str, Field(max_length=128)] = ""
    remote: Annotated[str, Field(max_length=128)] = ""
    state: Annotated[str, Field(max_length=32)] = ""


class FileChangesSummary(KubeModel):
    changed_count: int = Field(default=0, ge=0)
    changed_paths: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=MAX_PATHS
    )
    deleted_count: int = Field(default=0, ge=0)
    deleted_paths: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=MAX_PATHS
    )


class MemoryHit(KubeModel):
    """Where a search pattern matched. ``context`` is redacted as in the CLI unless reveal."""

    pid: int
    address: Annotated[str, Field(max_length=20, description="Virtual address, 0x-hex.")]
    pattern: _Pattern
    context: Annotated[str, Field(max_length=256)] = ""


class FindingSummary(KubeModel):
    """One finding of the analyzer's rules (most severe first); details are in the report."""

    rule: Annotated[str, Field(max_length=128)]
    severity: Annotated[str, Field(max_length=16)]
    title: Annotated[str, Field(max_length=256)] = ""
    pid: int | None = None
    #: The analyzer's stable id (``<rule>:<subject>``): the same finding in a later capture has it.
    id: Annotated[str, Field(max_length=512)] = ""


class AnalysisSummary(KubeModel):
    """A bounded digest of the analysis report; counts are totals, lists are the first N."""

    identity: IdentitySummary = Field(default_factory=IdentitySummary)
    process_count: int = Field(default=0, ge=0)
    processes: list[ProcessSummary] = Field(default_factory=list, max_length=MAX_PROCESSES)
    listening_count: int = Field(default=0, ge=0)
    listening: list[SocketSummary] = Field(default_factory=list, max_length=MAX_SOCKETS)
    established_count: int = Field(default=0, ge=0)
    established: list[SocketSummary] = Field(default_factory=list, max_length=MAX_SOCKETS)
    files: FileChangesSummary = Field(default_factory=FileChangesSummary)
    memory_hit_count: int = Field(default=0, ge=0)
    memory_hits: list[MemoryHit] = Field(default_factory=list, max_length=MAX_HITS)
    dump_stats: dict[str, int] = Field(
        default_factory=dict,
        description="CRIU dump statistics (times in microseconds, page counts).",
        json_schema_extra={"maxProperties": 32},
    )
    warning_count: int = Field(default=0, ge=0)
    warnings: list[Annotated[str, Field(max_length=512)]] = Field(
        default_factory=list, max_length=MAX_WARNINGS
    )
    #: Finding counts by severity (info, low, medium, high, critical).
    findings: dict[str, int] | None = Field(default=None, json_schema_extra={"maxProperties": 16})
    top_findings: list[FindingSummary] = Field(default_factory=list, max_length=MAX_FINDINGS)


class ExportStatus(KubeModel):
    """The export of the archive off the node, as the agent reports it."""

    #: Pending, Exporting, Retrying, Exported or Failed (the agent's ``export.phase``).
    phase: Annotated[str, Field(max_length=16)] = ""
    reason: Reason | None = None
    message: ShortText = ""
    destination: Annotated[str, Field(max_length=2048)] = ""
    #: sha256 of the stored object (of the ciphertext when encrypted).
    sha256: Annotated[str, Field(max_length=64)] = ""
    encrypted: bool = False
    exported_at: datetime | None = None


class ContainerCapturePhase(StrEnum):
    PENDING = "Pending"
    CAPTURING = "Capturing"
    ANALYZING = "Analyzing"
    COMPLETED = "Completed"
    FAILED = "Failed"


class ContainerStatus(KubeModel):
    """One container's capture. ``capture_key`` is what the agent dedupes on: recorded before the
    agent is asked, so a restarted operator asks for the same job instead of a new one."""

    name: DnsLabel
    capture_key: Annotated[str, Field(max_length=128)]
    phase: ContainerCapturePhase = ContainerCapturePhase.PENDING
    reason: Reason | None = None
    message: ShortText = ""
    remediation: ShortText = ""
    kubelet_status_code: int | None = None
    criu_log_excerpt: Annotated[str, Field(max_length=MAX_CRIU_LOG_EXCERPT)] = Field(
        default="", description="The runtime's CRIU log lines that show why a capture failed."
    )
    requested_at: datetime | None = None
    finished_at: datetime | None = None
    archive: ArchiveStatus | None = None
    summary: AnalysisSummary | None = None
    report_url: Annotated[str, Field(max_length=2048)] = Field(
        default="", description="The full report on the agent (GET with the operator token)."
    )
    archive_deleted: bool = False
    export: ExportStatus | None = None
    orphan_archive: bool = Field(
        default=False,
        description=(
            "The archive was written after the capture had failed (the kubelet finished the dump "
            "after the agent gave up on the call): kept on the node, hashed and subject to "
            "retention, but not analysed."
        ),
    )
    late_archive_watch_until: datetime | None = Field(
        default=None,
        description=(
            "The agent gave up on a kubelet call that may still write the archive; it looks for "
            "one until this time and keeps it with this capture."
        ),
    )
    frozen_time: Annotated[str, Field(max_length=32)] = Field(
        default="",
        description=(
            "How long the container was frozen for the dump (CRIU's frozen_time): it served "
            "nothing, and exec probes failed, for this long."
        ),
    )
    recaptures: int = Field(
        default=0,
        ge=0,
        description=(
            "How often the agent lost this capture's job (its state directory was wiped) and was "
            "asked again with the same key: each time the kubelet is called again, and the "
            "custody chain has a Requested entry with reason AgentStateLost before the new "
            "job's facts. The archive named here is the newest one."
        ),
    )


class ForensicCheckpointStatus(KubeModel):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=12,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    message: ShortText = ""
    reason: Reason | None = None
    node_name: Annotated[str, Field(max_length=253)] = ""
    pod_uid: Annotated[str, Field(max_length=64)] = ""
    agent_endpoint: Annotated[str, Field(max_length=512)] = ""
    #: Printer-column helpers: "app,sidecar" and "12.5 MiB".
    container_names: Annotated[str, Field(max_length=1100)] = ""
    total_size: Annotated[str, Field(max_length=32)] = ""
    #: Printer-column helper: the longest freeze of a container for its dump, "13.2s".
    frozen_time: Annotated[str, Field(max_length=32)] = ""
    started_at: datetime | None = None
    completed_at: datetime | None = None
    containers: list[ContainerStatus] = Field(
        default_factory=list,
        max_length=MAX_CONTAINERS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    #: The chain of custody, written by the operator alone (hash rules: api/custody.py).
    custody: list[Annotated[CustodyEntry, Field(json_schema_extra=CUSTODY_ENTRY_SCHEMA)]] = Field(
        default_factory=list, max_length=MAX_CUSTODY_ENTRIES, json_schema_extra=CUSTODY_LIST_SCHEMA
    )


class ForensicCheckpoint(RootModel):
    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="ForensicCheckpoint",
        plural="forensiccheckpoints",
        singular="forensiccheckpoint",
        scope="Namespaced",
        short_names=("fcp",),
        printer_columns=(
            PrinterColumn("Pod", ".spec.podName"),
            PrinterColumn("Containers", ".status.containerNames"),
            PrinterColumn("Node", ".status.nodeName"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn(
                "Suspicious",
                '.status.conditions[?(@.type=="Suspicious")].status',
                description="True: a high or critical finding; False: completed without one.",
            ),
            PrinterColumn(
                "Size", ".status.totalSize", description="All archives' size, e.g. 9.3 MiB."
            ),
            PrinterColumn(
                "Frozen",
                ".status.frozenTime",
                priority=1,
                description="How long the workload was frozen for its dump (longest container).",
            ),
            PrinterColumn(
                "Reason",
                ".status.reason",
                priority=1,
                description="Why the checkpoint is in its phase, e.g. the failure's reason.",
            ),
            PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
        ),
        validations=(CUSTODY_PRESENCE_RULE,),
    )

    kind: str = "ForensicCheckpoint"
    spec: ForensicCheckpointSpec = Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "spec is immutable"}
            ]
        }
    )
    status: ForensicCheckpointStatus | None = None
