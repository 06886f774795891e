"""The ``ForensicCheckpoint`` custom resource: "checkpoint this pod and tell me what is inside".

The spec is immutable (CEL ``self == oldSelf``): a checkpoint is a one-off piece of evidence,
and a changed request would make the recorded status lie about what was captured.

The status is bounded. Each list is capped (see the ``MAX_*`` constants) and carries a total
count next to it; the full report stays on the node (``reportUrl``, or
``kubectl forensic report``).

Over 400 lines because every field carries its docstring, which ``kubectl explain`` shows: the
kind's whole schema stays in one place.
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
    """The alert's fingerprint (Alertmanager) or a hash of the Falco event: what the receiver
    dedupes on.
    """
    starts_at: datetime | None = None
    """When the alert started firing."""
    severity: Annotated[str, Field(max_length=63)] = ""
    """The alert's severity label or Falco priority."""
    policy: Annotated[str, Field(max_length=253)] = Field(
        default="", description="The ForensicCapturePolicy that matched."
    )
    accepted_at: datetime | None = None
    """When the receiver accepted the alert. Alert captures over the concurrency cap wait in
    phase Queued and are admitted in this order (then by name)."""


class CaptureReasonSpec(KubeModel):
    """Why the checkpoint was taken: free text from a human, or the alert that caused it."""

    text: ShortText = ""
    """Free text from whoever asked: why this pod is being captured."""
    alert: AlertReference | None = None
    """The alert that caused the capture; only the operator's alert receiver may set it (the chart's
    admission policy).
    """


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
    """What the analysis searches the checkpoint's memory for."""
    reason: CaptureReasonSpec | None = None
    """Why the checkpoint was taken: free text or the alert behind it. Recorded in the chain of
    custody.
    """


# --- status --------------------------------------------------------------------------------


class Phase(StrEnum):
    #: An alert capture waiting for a slot under the receiver's concurrency cap (docs/alerts.md).
    QUEUED = "Queued"
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
    """Host path of the archive on the node (the agent keeps it mode 0600)."""
    sha256: Sha256
    """sha256 of the archive as the kubelet wrote it, hex."""
    size_bytes: int = Field(ge=0)
    """The archive's size in bytes."""
    captured_at: datetime
    """When the agent received the archive from the kubelet."""


class StageTimings(KubeModel):
    """Where one container's capture time went, in milliseconds, each set when its stage ends."""

    queued_ms: int | None = Field(default=None, ge=0)
    """From the agent accepting the job to its kubelet call."""
    kubelet_ms: int | None = Field(default=None, ge=0)
    """The kubelet's checkpoint call: the runtime's dump and its archive."""
    hash_ms: int | None = Field(default=None, ge=0)
    """The agent's sha256 of the archive (it runs beside the analysis: the two overlap)."""
    analysis_ms: int | None = Field(default=None, ge=0)
    """The analysis of the archive on the node (beside the hash)."""
    report_ms: int | None = Field(default=None, ge=0)
    """From the agent finishing the job to the operator writing its final phase here."""


class IdentitySummary(KubeModel):
    """Who the checkpoint belongs to, read from the archive itself (not from the request)."""

    runtime: Annotated[str, Field(max_length=63)] = ""
    """The container runtime that wrote the archive (CRI-O, containerd, Podman)."""
    pod_name: Annotated[str, Field(max_length=253)] = ""
    """The pod named in the archive's own metadata."""
    pod_namespace: Annotated[str, Field(max_length=63)] = ""
    """The namespace named in the archive's own metadata."""
    container_name: Annotated[str, Field(max_length=253)] = ""
    """The container named in the archive's own metadata."""
    image: Annotated[str, Field(max_length=1024)] = ""
    """The container's image, as the archive names it."""
    checkpointed_at: datetime | None = None
    """When the runtime wrote the checkpoint, as the archive says."""
    matches_request: bool | None = Field(
        default=None, description="False when the archive names another pod or container."
    )


class ProcessSummary(KubeModel):
    pid: int
    """Process id inside the container's PID namespace."""
    ppid: int = 0
    """Parent process id."""
    comm: Annotated[str, Field(max_length=64)] = ""
    """The process's command name (comm)."""
    cmdline: Annotated[str, Field(max_length=512)] = ""
    """The process's command line, arguments joined by spaces (truncated)."""


class SocketSummary(KubeModel):
    pid: int | None = None
    """The process holding the socket, when known."""
    protocol: Annotated[str, Field(max_length=16)] = ""
    """tcp, tcp6, udp, udp6 or unix."""
    local: Annotated[str, Field(max_length=128)] = ""
    """Local address:port (or path)."""
    remote: Annotated[str, Field(max_length=128)] = ""
    """Remote address:port; empty for a listening socket."""
    state: Annotated[str, Field(max_length=32)] = ""
    """The socket's TCP state (LISTEN, ESTABLISHED, ...)."""


class FileChangesSummary(KubeModel):
    changed_count: int = Field(default=0, ge=0)
    """How many files the container added or changed over its image."""
    changed_paths: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=MAX_PATHS
    )
    """The first of those paths."""
    deleted_count: int = Field(default=0, ge=0)
    """How many files of the image the container deleted."""
    deleted_paths: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=MAX_PATHS
    )
    """The first of those paths."""


class MemoryHit(KubeModel):
    """Where a search pattern matched. ``context`` is redacted as in the CLI unless reveal."""

    pid: int
    """The process whose memory matched."""
    address: Annotated[str, Field(max_length=20, description="Virtual address, 0x-hex.")]
    pattern: _Pattern
    """The search string or regex that matched."""
    context: Annotated[str, Field(max_length=256)] = ""
    """Bytes around the match, printable, redacted unless spec.analysis.reveal."""


class FindingSummary(KubeModel):
    """One finding of the analyzer's rules (most severe first); details are in the report."""

    rule: Annotated[str, Field(max_length=128)]
    """The rule's id (docs/findings.md), e.g. reverse-shell."""
    severity: Annotated[str, Field(max_length=16)]
    """info, low, medium, high or critical."""
    title: Annotated[str, Field(max_length=256)] = ""
    """What the rule found, in one line."""
    pid: int | None = None
    """The process the finding is about, when it is about one."""
    id: Annotated[str, Field(max_length=512)] = ""
    """The analyzer's stable id (<rule>:<subject>): the same finding in a later capture has it."""


class AnalysisSummary(KubeModel):
    """A bounded digest of the analysis report; counts are totals, lists are the first N."""

    identity: IdentitySummary = Field(default_factory=IdentitySummary)
    """Who the archive belongs to, read from the archive itself."""
    process_count: int = Field(default=0, ge=0)
    """How many processes the checkpoint holds."""
    processes: list[ProcessSummary] = Field(default_factory=list, max_length=MAX_PROCESSES)
    """The first processes (pid order)."""
    listening_count: int = Field(default=0, ge=0)
    """How many listening sockets."""
    listening: list[SocketSummary] = Field(default_factory=list, max_length=MAX_SOCKETS)
    """The first listening sockets."""
    established_count: int = Field(default=0, ge=0)
    """How many connected sockets."""
    established: list[SocketSummary] = Field(default_factory=list, max_length=MAX_SOCKETS)
    """The first connected sockets."""
    files: FileChangesSummary = Field(default_factory=FileChangesSummary)
    """Files the container changed or deleted over its image (rootfs-diff)."""
    memory_hit_count: int = Field(default=0, ge=0)
    """How many matches of spec.analysis searches and regexes in memory."""
    memory_hits: list[MemoryHit] = Field(default_factory=list, max_length=MAX_HITS)
    """The first matches."""
    dump_stats: dict[str, int] = Field(
        default_factory=dict,
        description="CRIU dump statistics (times in microseconds, page counts).",
        json_schema_extra={"maxProperties": 32},
    )
    warning_count: int = Field(default=0, ge=0)
    """How many warnings the analyzer raised (unreadable sections, ...)."""
    warnings: list[Annotated[str, Field(max_length=512)]] = Field(
        default_factory=list, max_length=MAX_WARNINGS
    )
    """The first warnings."""
    findings: dict[str, int] | None = Field(default=None, json_schema_extra={"maxProperties": 16})
    """Finding counts by severity (info, low, medium, high, critical)."""
    top_findings: list[FindingSummary] = Field(default_factory=list, max_length=MAX_FINDINGS)
    """The first findings, most severe first."""


class ExportStatus(KubeModel):
    """The export of the archive off the node, as the agent reports it."""

    phase: Annotated[str, Field(max_length=16)] = ""
    """Pending, Exporting, Retrying, Exported or Failed."""
    reason: Reason | None = None
    """CamelCase reason of the phase, e.g. why an export failed."""
    message: ShortText = ""
    """One line about the phase."""
    destination: Annotated[str, Field(max_length=2048)] = ""
    """Where the archive goes, s3://bucket/key."""
    sha256: Annotated[str, Field(max_length=64)] = ""
    """sha256 of the stored object (of the ciphertext when encrypted)."""
    encrypted: bool = False
    """Whether the stored object is age-encrypted."""
    exported_at: datetime | None = None
    """When the export finished."""


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
    """The container's name in the pod."""
    capture_key: Annotated[str, Field(max_length=128)]
    """<CR uid>-<container>: the agent dedupes on it, so a restarted operator asks for the same job.
    """
    phase: ContainerCapturePhase = ContainerCapturePhase.PENDING
    """Pending, Capturing, Analyzing, Completed or Failed."""
    reason: Reason | None = None
    """CamelCase reason of the phase, e.g. KubeletForbidden for a failure."""
    message: ShortText = ""
    """One line about the phase."""
    remediation: ShortText = ""
    """For a failure with a known fix: what to do."""
    kubelet_status_code: int | None = None
    """The HTTP status the kubelet answered the checkpoint call with."""
    criu_log_excerpt: Annotated[str, Field(max_length=MAX_CRIU_LOG_EXCERPT)] = Field(
        default="", description="The runtime's CRIU log lines that show why a capture failed."
    )
    requested_at: datetime | None = None
    """When the operator asked the agent for this capture."""
    finished_at: datetime | None = None
    """When the capture and analysis finished or failed."""
    archive: ArchiveStatus | None = None
    """The archive on the node, as the agent verified it."""
    summary: AnalysisSummary | None = None
    """A bounded digest of the analysis report (counts are totals, lists the first N)."""
    report_url: Annotated[str, Field(max_length=2048)] = Field(
        default="", description="The full report on the agent (GET with the operator token)."
    )
    archive_deleted: bool = False
    """Retention or the CR's deletion removed the archive from the node."""
    export: ExportStatus | None = None
    """The export of the archive off the node (S3), as the agent reports it."""
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
    timings: StageTimings | None = None
    """Milliseconds of each stage (queue, kubelet call, hash, analysis, status report)."""


class ForensicCheckpointStatus(KubeModel):
    phase: Phase = Phase.PENDING
    """Queued (an alert capture waiting for a slot under the alert receiver's concurrency cap),
    Pending, Capturing, Analyzing, Completed or Failed."""
    observed_generation: int | None = None
    """The metadata.generation this status describes."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=12,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Ready, Captured, Analyzed, Suspicious, Failed, Reconciling and Stalled (metav1.Condition)."""
    message: ShortText = ""
    """One line about the phase; for a failure with a known fix it ends in 'Remediation: ...'."""
    reason: Reason | None = None
    """CamelCase reason of the phase: Completed, or the failure's (PodNotFound, KubeletForbidden,
    ...).
    """
    node_name: Annotated[str, Field(max_length=253)] = ""
    """The node the pod runs on (and the capture ran on)."""
    pod_uid: Annotated[str, Field(max_length=64)] = ""
    """The uid of the pod captured."""
    agent_endpoint: Annotated[str, Field(max_length=512)] = ""
    """The node agent's API that took the capture."""
    container_names: Annotated[str, Field(max_length=1100)] = ""
    """The containers captured, comma-separated (printer column)."""
    total_size: Annotated[str, Field(max_length=32)] = ""
    """All archives' size, human-readable, e.g. 9.3 MiB (printer column SIZE)."""
    frozen_time: Annotated[str, Field(max_length=32)] = ""
    """The longest freeze of a container for its dump, e.g. 13.2s (printer column FROZEN)."""
    started_at: datetime | None = None
    """When the operator first acted on the checkpoint."""
    completed_at: datetime | None = None
    """When the checkpoint reached Completed or Failed."""
    containers: list[ContainerStatus] = Field(
        default_factory=list,
        max_length=MAX_CONTAINERS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """One entry per container captured."""
    custody: list[Annotated[CustodyEntry, Field(json_schema_extra=CUSTODY_ENTRY_SCHEMA)]] = Field(
        default_factory=list, max_length=MAX_CUSTODY_ENTRIES, json_schema_extra=CUSTODY_LIST_SCHEMA
    )
    """The chain of custody: append-only, hash-chained entries, written by the operator alone
    (docs/evidence.md).
    """


class ForensicCheckpoint(RootModel):
    """A forensic checkpoint of one pod's containers: the operator has the node's agent
    checkpoint them through the kubelet (CRIU, the containers keep running), hash and analyse
    the archives, and reports the archives, an analysis summary and the chain of custody in the
    status. The spec is immutable."""

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
    """What to capture and what to look for (immutable)."""
    status: ForensicCheckpointStatus | None = None
    """What the capture gave, written by the operator alone."""
