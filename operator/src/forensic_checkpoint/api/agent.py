"""Wire models of the node agent's HTTP API (operator -> agent).

The operator and the agent share exactly these models, so a field renamed on one side breaks the
type check on the other instead of a capture at run time. JSON uses camelCase (``by_alias``);
Python code uses snake_case (``populate_by_name``).

Endpoints (HTTPS, ``Authorization: Bearer <operator ServiceAccount token>``, a token issued for
the audience :func:`agent_audience` of the agent's node, so that it is worth nothing at the
API server or at any other node's agent):

- ``POST /v1/captures`` body :class:`CaptureRequest` -> :class:`CaptureStatus`, 202 when queued,
  200 when a job with that key already exists (idempotent: never a second kubelet call).
- ``GET /v1/captures`` -> :class:`CaptureDigests`: one line per job the agent keeps, so that the
  operator follows every kept archive of a node with one call (an agent older than this answers
  405, and is asked job by job).
- ``GET /v1/captures/{key}`` -> :class:`CaptureStatus`; 404 :class:`ErrorBody` ``NotFound``.
- ``GET /v1/captures/{key}/report`` -> the full analysis report JSON (``analysis.report.Report``),
  for users and the kubectl plugin; the operator uses ``CaptureStatus.summary`` instead.
- ``GET /v1/captures/{key}/archive`` -> the archive bytes, header :data:`SHA256_HEADER`.
- ``PUT /v1/captures/{key}/hold`` body :class:`HoldRequest` -> :class:`CaptureStatus`: set or lift
  the legal hold (retention never deletes a held archive).
- ``DELETE /v1/captures/{key}`` -> :class:`DeleteResult`; 409 while the job or its export runs,
  and 409 ``HeldNotExported`` for a held archive that exists nowhere else.
- ``GET /healthz``, ``GET /metrics``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from forensic_checkpoint.api.custody import CustodyAction, ExportRecord, KubeletResponse
from forensic_checkpoint.api.forensiccheckpoint import AnalysisSummary

API_PREFIX = "/v1/captures"
SHA256_HEADER = "X-Checkpoint-Sha256"


#: Kubernetes names are at most 253 characters; a key is a uid (36) + "-" + a container name (63).
_KEY_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CaptureKey = Annotated[str, Field(min_length=1, max_length=128, pattern=_KEY_PATTERN)]
_Name = Annotated[str, Field(min_length=1, max_length=253)]

MAX_TIMEOUT_SECONDS = 3600


def capture_key(checkpoint_uid: str, container: str) -> str:
    """The capture key of one container of one ForensicCheckpoint: ``<CR uid>-<container>``."""
    return f"{checkpoint_uid}-{container}"


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields ignored (newer peers)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=False
    )

    def to_json(self) -> str:
        """The wire form: camelCase, without unset optional fields."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


class CaptureState(StrEnum):
    QUEUED = "Queued"
    CAPTURING = "Capturing"
    ANALYZING = "Analyzing"
    COMPLETED = "Completed"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (CaptureState.COMPLETED, CaptureState.FAILED)


class AnalysisOptions(WireModel):
    """What the analyzer searches memory for; matches stay redacted unless ``reveal``."""

    searches: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=32
    )
    regexes: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=32
    )
    reveal: bool = False


class CaptureRequest(WireModel):
    """Ask the agent on the pod's node to checkpoint one container and analyse the archive."""

    key: CaptureKey
    checkpoint_uid: _Name
    checkpoint_namespace: _Name
    checkpoint_name: _Name
    pod_namespace: _Name
    pod_name: _Name
    pod_uid: str = Field(default="", max_length=64)
    container: _Name
    #: Passed to the kubelet as ``?timeout=``; ``None`` lets the kubelet use its CRI default.
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)
    analysis: AnalysisOptions = Field(default_factory=AnalysisOptions)
    #: Legal hold at creation (the CR's ``forensic-checkpoint.dev/hold``); changed later with
    #: ``PUT .../hold``.
    hold: bool = False


class HoldRequest(WireModel):
    """Body of ``PUT /v1/captures/{key}/hold``."""

    hold: bool


class ArchiveInfo(WireModel):
    """The archive as the agent verified it (path on the node's host filesystem)."""

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    captured_at: datetime


#: Custody facts the agent reports; ``Requested`` is the operator's own.
AGENT_ACTIONS = (
    CustodyAction.CAPTURED,
    CustodyAction.EXPORTED,
    CustodyAction.VERIFIED,
    CustodyAction.DELETED,
)


class CustodyFact(WireModel):
    """Something the agent did to the evidence, as it happened. The agent does not chain these:
    the operator appends each new fact (by its index in its job's ``custodyEvents``) to the CR's
    ``status.custody`` with :func:`forensic_checkpoint.domain.evidence.custody.append`."""

    action: CustodyAction
    time: datetime
    #: ``agent/<node>``.
    actor: str
    node: str
    container: str
    kubelet_response: KubeletResponse | None = None
    #: The archive's sha256 and size at capture.
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    size_bytes: int | None = Field(default=None, ge=0)
    url: str | None = None
    #: sha256 of the stored object (the ciphertext when encrypted).
    object_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    encrypted: bool | None = None
    #: CamelCase, e.g. ``RetentionMaxAge`` for a deletion.
    reason: str | None = None
    message: str | None = Field(default=None, max_length=1024)


class ExportPhase(StrEnum):
    """Where the export of a Completed capture stands (``CaptureStatus.export.phase``)."""

    PENDING = "Pending"
    EXPORTING = "Exporting"
    #: The last attempt failed with a transient error; ``nextAttemptAt`` says when it retries.
    RETRYING = "Retrying"
    EXPORTED = "Exported"
    #: Will not be retried (integrity mismatch, archive gone); the local archive is kept.
    FAILED = "Failed"

    @property
    def active(self) -> bool:
        return self in (ExportPhase.PENDING, ExportPhase.EXPORTING, ExportPhase.RETRYING)


class ExportProgress(WireModel):
    """How the export of a Completed capture is going (absent when export is not configured).

    The operator copies a digest of it into the CR (``forensiccheckpoint.ExportStatus``)."""

    phase: ExportPhase
    attempts: int = 0
    reason: str | None = None
    message: str | None = None
    next_attempt_at: datetime | None = None
    #: Set once ``Exported``: url, object sha256, archive sha256, size, exportedAt.
    record: ExportRecord | None = None
    #: The archive's upload and read-back, started once its sha256 was recorded (beside the
    #: analysis, so it overlaps ``timings.analysisMs``); absent when it ran after the job ended.
    archive_ms: int | None = Field(default=None, ge=0)
    #: From the job's end (Completed, or Failed with its archive kept) to ``Exported``.
    after_finished_ms: int | None = Field(default=None, ge=0)


class CaptureTimings(WireModel):
    """Milliseconds of each stage of one job, each set when its stage ends: where the time
    between the request and Completed went (the kubelet's dump, or the agent's own work)."""

    #: From the agent accepting the job to its kubelet call (waiting for a capture worker, or
    #: for the container's previous capture).
    queued_ms: int | None = Field(default=None, ge=0)
    #: The kubelet call: the runtime's dump and its archive (or, after a restart, the wait for
    #: the archive of a call the restart cut).
    kubelet_ms: int | None = Field(default=None, ge=0)
    #: sha256 of the archive (beside the analysis: the two overlap).
    hash_ms: int | None = Field(default=None, ge=0)
    #: The analysis of the archive (beside the hash).
    analysis_ms: int | None = Field(default=None, ge=0)


class CaptureStatus(WireModel):
    """Where one capture job stands. ``reason`` is a condition reason (CamelCase)."""

    key: CaptureKey
    state: CaptureState
    reason: str | None = None
    message: str | None = None
    remediation: str | None = None
    #: The kubelet's HTTP status, when the kubelet answered at all.
    kubelet_status_code: int | None = None
    #: The relevant lines of the runtime's CRIU log for a failed checkpoint, when readable.
    criu_log_excerpt: str | None = Field(default=None, max_length=8192)
    archive: ArchiveInfo | None = None
    #: The bounded digest of the analysis report, set once ``Completed``: the operator copies it
    #: into the ForensicCheckpoint's status and never downloads the report itself. Added to v1
    #: as an optional field, so an older operator ignores it; an older agent sends none.
    summary: AnalysisSummary | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    export: ExportProgress | None = None
    #: Legal hold: retention never deletes this archive.
    held: bool = False
    #: Set when retention deleted the archive and report (the job record stays, for its facts).
    archive_deleted_at: datetime | None = None
    archive_deleted_reason: str | None = None
    #: The agent gave up on a kubelet call that reached the kubelet (``Timeout``, a broken
    #: connection): until this time it looks for an archive the kubelet may still write.
    late_archive_watch_until: datetime | None = None
    #: ``archive`` was written after the agent had given up on the call (or no capture claimed
    #: it): it is kept, hashed and subject to retention, but not analysed; the job stays Failed.
    orphan_archive: bool = False
    #: Append-only, in the order things happened; see :class:`CustodyFact`.
    custody_events: list[CustodyFact] = Field(default_factory=list)
    #: Where the job's time went (added to v1 as optional: an older agent sends none).
    timings: CaptureTimings | None = None


class CaptureDigest(WireModel):
    """What the operator needs to tell whether a finished job has news: how many custody facts
    the job has (append-only, so a longer list is a new fact) and whether retention deleted its
    archive. The facts themselves are read with ``GET /v1/captures/{key}``."""

    key: CaptureKey
    state: CaptureState
    custody_events: int = Field(default=0, ge=0)
    archive_deleted: bool = False
    export_phase: ExportPhase | None = None


class CaptureDigests(WireModel):
    """Body of ``GET /v1/captures``: every job the agent keeps on its node."""

    node_name: str
    items: list[CaptureDigest] = Field(default_factory=list)


def digest_of(status: CaptureStatus) -> CaptureDigest:
    """The digest line of one job."""
    return CaptureDigest(
        key=status.key,
        state=status.state,
        custody_events=len(status.custody_events),
        archive_deleted=status.archive_deleted_at is not None,
        export_phase=status.export.phase if status.export is not None else None,
    )


class DeleteResult(WireModel):
    """What a DELETE removed: host paths of the archive and report that existed."""

    key: CaptureKey
    deleted: list[str] = Field(default_factory=list)
    #: The capture was in flight: it is marked deleted, and the archive its kubelet call may
    #: still write is deleted when it lands (the job record stays as the account).
    pending: bool = False


class ErrorBody(WireModel):
    """The body of every non-2xx answer."""

    reason: str
    message: str = ""


class Health(WireModel):
    status: str = "ok"
    node_name: str
    queue_depth: int = 0
    version: str = ""
