"""The ForensicCheckpoint state machine as pure functions: status in, status out.

The kopf layer gathers facts (the pod, the agent's ForensicNode, the agent's capture status),
calls these functions and writes what they return. Nothing here talks to the network, so every
transition is tested without a cluster and an operator restart can recompute any decision from
the object alone.

Order of a capture, with what makes it restart-safe:

1. :func:`record_targets` writes the containers and their capture keys into the status *before*
   the agent is asked. A restarted operator finds the keys and asks for the same jobs; the agent
   dedupes on the key, so the kubelet is called once per container.
2. :func:`apply_capture_status` folds the agent's job state into the container's status.
   A Completed job carries the analysis digest the agent built, which :func:`attach_summary`
   copies into the container's status.
3. :func:`aggregate` derives phase, conditions, message and printer-column fields.

Beside it: :mod:`.phases` (agent states -> phases), :mod:`.checkpoint_conditions`,
:mod:`.checkpoint_events` (the Events of a transition) and :mod:`.finished` (a finished
capture's export, retention and late archive).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from forensic_checkpoint.api.agent import (
    AnalysisOptions,
    CaptureRequest,
    CaptureStatus,
    capture_key,
)
from forensic_checkpoint.api.forensiccheckpoint import (
    MAX_CRIU_LOG_EXCERPT,
    AnalysisSummary,
    ContainerCapturePhase,
    ContainerStatus,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
    Phase,
    StageTimings,
)
from forensic_checkpoint.domain.capture.checkpoint_conditions import conditions
from forensic_checkpoint.domain.capture.finished import apply_export, archive_status
from forensic_checkpoint.domain.capture.phases import TERMINAL, checkpoint_phase, container_phase
from forensic_checkpoint.domain.capture.targets import Rejection, Targets
from forensic_checkpoint.domain.formatting import frozen_time, human_size, with_remediation
from forensic_checkpoint.domain.readiness import NodeNotReady
from forensic_checkpoint.user_regex import compile_user_regex

AGENT_UNAVAILABLE = "AgentUnavailable"
AGENT_LOST_CAPTURE = "AgentLostCapture"
#: Extra time on top of the kubelet timeout for queueing, hashing and analysis.
DEFAULT_GRACE = timedelta(minutes=5)
#: The kubelet's default runtimeRequestTimeout: it raises a shorter spec.timeoutSeconds to this
#: (k8s.io/cri-client CheckpointContainer), so a capture may take this long in any case.
RUNTIME_REQUEST_TIMEOUT = timedelta(minutes=2)


@dataclass(frozen=True)
class CheckpointRef:
    """The identity of the ForensicCheckpoint being reconciled."""

    name: str
    namespace: str
    uid: str
    generation: int | None
    #: The CR's legal hold (``forensic-checkpoint.dev/hold``) as of this pass.
    held: bool = False

    @classmethod
    def of(cls, metadata: Mapping[str, Any]) -> CheckpointRef:
        """The reference of an object with this ``metadata``."""
        name, namespace, uid = (str(metadata.get(k)) for k in ("name", "namespace", "uid"))
        return cls(name=name, namespace=namespace, uid=uid, generation=metadata.get("generation"))


INVALID_SPEC = "InvalidSpec"


def check_spec(spec: ForensicCheckpointSpec) -> Rejection | None:
    """What the CRD schema cannot check: that every regex compiles with the agent's engine (RE2
    over raw bytes, :mod:`forensic_checkpoint.user_regex`), before any container is frozen."""
    for pattern in spec.analysis.regexes:
        try:
            compile_user_regex(pattern.encode("utf-8"))
        except ValueError as exc:
            return Rejection(INVALID_SPEC, f"spec.analysis.regexes: {pattern!r} is invalid: {exc}")
    return None


def record_targets(
    status: ForensicCheckpointStatus,
    decision: Targets | Rejection,
    *,
    ref: CheckpointRef,
    now: datetime,
) -> ForensicCheckpointStatus:
    """The status after resolving the pod: the containers to capture, or Failed."""
    new = status.model_copy(deep=True)
    new.started_at = new.started_at or now
    if isinstance(decision, Rejection):
        return fail(new, reason=decision.reason, message=decision.message, ref=ref, now=now)
    new.node_name = decision.node_name
    new.pod_uid = decision.pod_uid
    new.containers = [
        ContainerStatus(name=name, capture_key=capture_key(ref.uid, name))
        for name in decision.containers
    ]
    return aggregate(new, ref=ref, now=now)


def fail(
    status: ForensicCheckpointStatus,
    *,
    reason: str,
    message: str,
    ref: CheckpointRef,
    now: datetime,
    remediation: str = "",
) -> ForensicCheckpointStatus:
    """Fail every unfinished container (or the whole request if none were chosen yet)."""
    new = status.model_copy(deep=True)
    for container in new.containers:
        if container.phase not in TERMINAL:
            container.phase = ContainerCapturePhase.FAILED
            container.reason = reason
            container.message = message[:1024]
            container.remediation = remediation[:1024]
            container.finished_at = now
    new.reason = reason
    new.message = with_remediation(message, remediation)
    new.phase = Phase.FAILED
    return aggregate(new, ref=ref, now=now)


def node_not_ready(
    status: ForensicCheckpointStatus,
    blocker: NodeNotReady,
    *,
    ref: CheckpointRef,
    now: datetime,
) -> ForensicCheckpointStatus:
    """Fail at once because the node's agent reports it cannot capture (a failed readiness
    check): asking the kubelet would only fail later, or freeze the workload for nothing."""
    return fail(
        status,
        reason=blocker.reason,
        message=blocker.message,
        remediation=blocker.remediation,
        ref=ref,
        now=now,
    )


def capture_request(
    ref: CheckpointRef,
    spec: ForensicCheckpointSpec,
    container: ContainerStatus,
) -> CaptureRequest:
    """What the agent is asked for one container. The key comes from the status, so a request
    after a restart is byte-for-byte the request before it."""
    return CaptureRequest(
        key=container.capture_key,
        checkpoint_uid=ref.uid,
        checkpoint_namespace=ref.namespace,
        checkpoint_name=ref.name,
        pod_namespace=ref.namespace,
        pod_name=spec.pod_name,
        container=container.name,
        timeout_seconds=spec.timeout_seconds,
        hold=ref.held,
        analysis=AnalysisOptions(
            searches=list(spec.analysis.searches),
            regexes=list(spec.analysis.regexes),
            reveal=spec.analysis.reveal,
        ),
    )


def mark_requested(container: ContainerStatus, *, now: datetime) -> ContainerStatus:
    """The container after the agent accepted its job. Asked before (``requested_at`` set), the
    agent had lost the job, so the kubelet is called again: a re-capture, counted in
    ``recaptures`` (custody and an Event record it)."""
    new = container.model_copy(deep=True)
    if new.requested_at is None:
        new.requested_at = now
    else:
        new.recaptures += 1
    if new.phase == ContainerCapturePhase.PENDING:
        new.phase = ContainerCapturePhase.CAPTURING
    return new


def apply_capture_status(
    container: ContainerStatus, capture: CaptureStatus, *, report_url: str, now: datetime
) -> ContainerStatus:
    """Fold the agent's job state into the container's status (the phase from
    :func:`~forensic_checkpoint.domain.capture.phases.container_phase`). A Completed job brings its
    analysis summary and export, a Failed one with an archive its export; an agent older than
    the summary field sends none: the container completes without one, and its report stays at
    ``reportUrl``."""
    new = container.model_copy(deep=True)
    if new.phase in TERMINAL:
        return new
    if capture.archive is not None:
        new.archive = archive_status(capture.archive)
    new.kubelet_status_code = capture.kubelet_status_code
    new.late_archive_watch_until = capture.late_archive_watch_until
    new.orphan_archive = capture.orphan_archive
    phase = container_phase(capture.state)
    new.timings = stage_timings(capture, terminal=phase in TERMINAL, now=now)
    if phase == ContainerCapturePhase.FAILED:
        new.phase = phase
        new.reason = capture.reason or "CaptureFailed"
        new.message = (capture.message or "the agent reported a failed capture")[:1024]
        new.remediation = (capture.remediation or "")[:1024]
        new.criu_log_excerpt = _excerpt(capture.criu_log_excerpt)
        new.finished_at = capture.finished_at or now
        # An archive whose analysis failed is still exported, as evidence: follow that export.
        return apply_export(new, capture.export) if new.archive is not None else new
    new.phase = phase
    new.reason = None
    new.message = ""
    if phase != ContainerCapturePhase.CAPTURING:
        new.report_url = report_url
    if phase == ContainerCapturePhase.COMPLETED:
        new = attach_summary(new, capture.summary, finished_at=capture.finished_at or now)
        new = apply_export(new, capture.export)
    return new


def stage_timings(capture: CaptureStatus, *, terminal: bool, now: datetime) -> StageTimings | None:
    """The agent's stage timings, and for a finished job the time from the agent finishing it
    to this status write (the operator's own delay)."""
    if capture.timings is None:
        return None
    timings = StageTimings.model_validate(capture.timings.model_dump())
    if terminal and capture.finished_at is not None:
        delay = (now - capture.finished_at).total_seconds()
        timings.report_ms = max(0, round(delay * 1000))
    return timings


def _excerpt(text: str | None) -> str:
    """The agent's CRIU log excerpt, cut to the status field's size at a line boundary (the
    first lines carry the cause; the agent puts them first)."""
    if not text or len(text) <= MAX_CRIU_LOG_EXCERPT:
        return text or ""
    cut = text[: MAX_CRIU_LOG_EXCERPT - 4]
    return cut[: cut.rfind("\n") + 1 or len(cut)] + "...\n"


def attach_summary(
    container: ContainerStatus, summary: AnalysisSummary | None, *, finished_at: datetime
) -> ContainerStatus:
    new = container.model_copy(deep=True)
    new.summary = summary
    new.frozen_time = frozen_time(summary)
    new.phase = ContainerCapturePhase.COMPLETED
    new.finished_at = finished_at
    return new


def overdue(
    container: ContainerStatus,
    spec: ForensicCheckpointSpec,
    *,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
) -> bool:
    """Whether a requested capture has had longer than the kubelet's deadline plus ``grace``.
    The deadline is ``max(timeoutSeconds, runtimeRequestTimeout)``: the kubelet raises a shorter
    timeout, so the agent may rightly still be waiting after ``timeoutSeconds``."""
    if container.requested_at is None or container.phase in TERMINAL:
        return False
    deadline = max(timedelta(seconds=spec.timeout_seconds), RUNTIME_REQUEST_TIMEOUT)
    return now - container.requested_at > deadline + grace


def _failure(containers: list[ContainerStatus]) -> ContainerStatus | None:
    return next((c for c in containers if c.phase == ContainerCapturePhase.FAILED), None)


def aggregate(
    status: ForensicCheckpointStatus, *, ref: CheckpointRef, now: datetime
) -> ForensicCheckpointStatus:
    """Derive phase, message, conditions and the printer-column fields from the containers."""
    new = status.model_copy(deep=True)
    new.observed_generation = ref.generation
    if new.containers:
        new.phase = checkpoint_phase(new.containers)
    elif new.phase != Phase.FAILED:
        new.phase = Phase.PENDING
    new.container_names = ",".join(c.name for c in new.containers)[:1100]
    sizes = [c.archive.size_bytes for c in new.containers if c.archive is not None]
    new.total_size = human_size(sum(sizes)) if sizes else ""
    new.frozen_time = _longest_freeze(new.containers)

    failed = _failure(new.containers)
    if failed is not None and new.phase == Phase.FAILED:
        new.reason = failed.reason
        new.message = with_remediation(
            f"container {failed.name}: {failed.message}", failed.remediation
        )
    elif new.phase == Phase.COMPLETED:
        new.reason = "Completed"
        hits = sum(c.summary.memory_hit_count for c in new.containers if c.summary)
        new.message = (
            f"checkpointed and analysed {len(new.containers)} container(s), "
            f"{new.total_size}, {hits} memory hit(s)"
        )
    elif new.phase != Phase.FAILED:
        new.reason = new.phase.value
        new.message = ""
    if new.phase.terminal and new.completed_at is None:
        new.completed_at = now

    new.conditions = conditions(new, generation=ref.generation, now=now)
    return new


def _longest_freeze(containers: list[ContainerStatus]) -> str:
    """The printer column's freeze: the container frozen longest for its dump."""
    frozen = [
        (c.summary.dump_stats["frozenTime"], c.frozen_time)
        for c in containers
        if c.summary is not None and "frozenTime" in c.summary.dump_stats
    ]
    return max(frozen)[1] if frozen else ""


def agent_waiting(
    status: ForensicCheckpointStatus,
    *,
    message: str,
    ref: CheckpointRef,
    now: datetime,
) -> ForensicCheckpointStatus:
    """Record that the agent cannot be reached right now (not yet a failure)."""
    new = status.model_copy(deep=True)
    new = aggregate(new, ref=ref, now=now)
    new.reason = AGENT_UNAVAILABLE
    new.message = message[:1024]
    new.conditions = conditions(new, generation=ref.generation, now=now)
    return new
