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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from forensic_checkpoint.api.agent import (
    AnalysisOptions,
    CaptureRequest,
    CaptureState,
    CaptureStatus,
    capture_key,
)
from forensic_checkpoint.api.agent import ExportStatus as AgentExportStatus
from forensic_checkpoint.api.conditions import ANALYZED, CAPTURED, READY, Condition, ConditionStatus
from forensic_checkpoint.api.forensiccheckpoint import (
    MAX_CRIU_LOG_EXCERPT,
    AnalysisSummary,
    ArchiveStatus,
    ContainerCapturePhase,
    ContainerStatus,
    ExportStatus,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
    Phase,
)
from forensic_checkpoint.domain.conditions import find_condition, set_condition
from forensic_checkpoint.domain.formatting import frozen_time, human_size
from forensic_checkpoint.domain.readiness import NodeNotReady
from forensic_checkpoint.domain.suspicion import SUSPICIOUS, verdict
from forensic_checkpoint.domain.targets import Rejection, Targets

AGENT_UNAVAILABLE = "AgentUnavailable"
AGENT_LOST_CAPTURE = "AgentLostCapture"
#: Extra time on top of the kubelet timeout for queueing, hashing and analysis.
DEFAULT_GRACE = timedelta(minutes=5)
#: The kubelet's default runtimeRequestTimeout: it raises a shorter spec.timeoutSeconds to this
#: (k8s.io/cri-client CheckpointContainer), so a capture may take this long in any case.
RUNTIME_REQUEST_TIMEOUT = timedelta(minutes=2)
#: How long after the agent's late-archive watch ends a failed container is still polled once.
LATE_ARCHIVE_SLACK = timedelta(seconds=30)

_TERMINAL = (ContainerCapturePhase.COMPLETED, ContainerCapturePhase.FAILED)
_ORDER = {
    ContainerCapturePhase.PENDING: 0,
    ContainerCapturePhase.CAPTURING: 1,
    ContainerCapturePhase.ANALYZING: 2,
}


@dataclass(frozen=True)
class CheckpointRef:
    """The identity of the ForensicCheckpoint being reconciled."""

    name: str
    namespace: str
    uid: str
    generation: int | None
    #: The CR's legal hold (``forensic-checkpoint.dev/hold``) as of this pass.
    held: bool = False


INVALID_SPEC = "InvalidSpec"


def check_spec(spec: ForensicCheckpointSpec) -> Rejection | None:
    """What the CRD schema cannot check: that every regex compiles (as a bytes pattern, the way
    the memory scanner uses it)."""
    for pattern in spec.analysis.regexes:
        try:
            re.compile(pattern.encode("utf-8"))
        except re.error as exc:
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
        if container.phase not in _TERMINAL:
            container.phase = ContainerCapturePhase.FAILED
            container.reason = reason
            container.message = message[:1024]
            container.remediation = remediation[:1024]
            container.finished_at = now
    new.reason = reason
    new.message = _with_remediation(message, remediation)
    new.phase = Phase.FAILED
    return aggregate(new, ref=ref, now=now)


def _with_remediation(message: str, remediation: str) -> str:
    """The status/condition message: what went wrong, then what to do (both in one line, as
    ``kubectl get -o wide`` and ``kubectl wait`` show only the message)."""
    text = f"{message} Remediation: {remediation}" if remediation else message
    return text[:1024]


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
    new = container.model_copy(deep=True)
    if new.requested_at is None:
        new.requested_at = now
    if new.phase == ContainerCapturePhase.PENDING:
        new.phase = ContainerCapturePhase.CAPTURING
    return new


def apply_capture_status(
    container: ContainerStatus, capture: CaptureStatus, *, report_url: str, now: datetime
) -> ContainerStatus:
    """Fold the agent's job state into the container's status; a Completed job brings its
    analysis summary (an agent older than the summary field sends none: the container completes
    without one, and its report stays at ``reportUrl``)."""
    new = container.model_copy(deep=True)
    if new.phase in _TERMINAL:
        return new
    if capture.archive is not None:
        new.archive = ArchiveStatus(
            path=capture.archive.path,
            sha256=capture.archive.sha256,
            size_bytes=capture.archive.size_bytes,
            captured_at=capture.archive.captured_at,
        )
    new.kubelet_status_code = capture.kubelet_status_code
    new.late_archive_watch_until = capture.late_archive_watch_until
    new.orphan_archive = capture.orphan_archive
    if capture.state == CaptureState.FAILED:
        new.phase = ContainerCapturePhase.FAILED
        new.reason = capture.reason or "CaptureFailed"
        new.message = (capture.message or "the agent reported a failed capture")[:1024]
        new.remediation = (capture.remediation or "")[:1024]
        new.criu_log_excerpt = _excerpt(capture.criu_log_excerpt)
        new.finished_at = capture.finished_at or now
        return new
    if capture.state in (CaptureState.QUEUED, CaptureState.CAPTURING):
        new.phase = ContainerCapturePhase.CAPTURING
    else:
        new.phase = ContainerCapturePhase.ANALYZING
        new.report_url = report_url
        if capture.state == CaptureState.COMPLETED:
            new = attach_summary(new, capture.summary, finished_at=capture.finished_at or now)
    new.reason = None
    new.message = ""
    return new


#: Agent export phases after which the operator stops polling a Completed capture.
_EXPORT_ACTIVE = frozenset({"Pending", "Exporting", "Retrying"})


def apply_export(container: ContainerStatus, export: AgentExportStatus | None) -> ContainerStatus:
    """Fold the agent's export sub-status into the container's (absent: export not configured)."""
    if export is None:
        return container
    new = container.model_copy(deep=True)
    record = export.record
    new.export = ExportStatus(
        phase=export.phase.value,
        reason=export.reason,
        message=(export.message or "")[:1024],
        destination=record.url if record else "",
        sha256=record.sha256 if record else "",
        encrypted=record.encrypted if record else False,
        exported_at=record.exported_at if record else None,
    )
    return new


def exporting(container: ContainerStatus) -> bool:
    """Whether a Completed container's export is still under way (so keep polling its agent)."""
    return container.export is not None and container.export.phase in _EXPORT_ACTIVE


def archive_kept(container: ContainerStatus) -> bool:
    """Whether a finished container's archive is still on its node (retention may delete it):
    a Completed one's, or the late archive kept with a Failed one."""
    kept = container.phase == ContainerCapturePhase.COMPLETED or (
        container.phase == ContainerCapturePhase.FAILED and container.orphan_archive
    )
    return kept and container.archive is not None and not container.archive_deleted


def awaiting_late_archive(container: ContainerStatus, now: datetime) -> bool:
    """Whether a Failed container's agent still watches for an archive the kubelet may write
    after the agent gave up on the call (``lateArchiveWatchUntil``)."""
    until = container.late_archive_watch_until
    return (
        container.phase == ContainerCapturePhase.FAILED
        and container.archive is None
        and until is not None
        and now <= until + LATE_ARCHIVE_SLACK
    )


def following(container: ContainerStatus, now: datetime) -> bool:
    """Whether a finished container's agent may still report something about it."""
    return exporting(container) or archive_kept(container) or awaiting_late_archive(container, now)


def follow_up(status: ForensicCheckpointStatus, now: datetime) -> bool:
    """Whether a finished ForensicCheckpoint still has agent work to follow soon (an export, or
    a late archive the agent watches for)."""
    return any(exporting(c) or awaiting_late_archive(c, now) for c in status.containers)


def keep_following(status: ForensicCheckpointStatus, now: datetime) -> bool:
    """Whether the agent may still report custody facts of a finished ForensicCheckpoint: an
    export under way, an archive that retention may yet delete, or a late archive."""
    return any(following(c, now) for c in status.containers)


def apply_follow_up(container: ContainerStatus, capture: CaptureStatus) -> ContainerStatus:
    """A finished container after an agent poll: its export, whether retention deleted the
    archive, and an archive the kubelet wrote after the capture failed (kept, not analysed)."""
    new = apply_export(container, capture.export)
    if (
        new.phase == ContainerCapturePhase.FAILED
        and new.archive is None
        and capture.archive is not None
    ):
        new = new.model_copy(
            update={
                "archive": ArchiveStatus(
                    path=capture.archive.path,
                    sha256=capture.archive.sha256,
                    size_bytes=capture.archive.size_bytes,
                    captured_at=capture.archive.captured_at,
                ),
                "orphan_archive": capture.orphan_archive,
                "message": (capture.message or new.message)[:1024],
            }
        )
    if capture.archive_deleted_at is not None and not new.archive_deleted:
        new = new.model_copy(update={"archive_deleted": True})
    return new


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
    if container.requested_at is None or container.phase in _TERMINAL:
        return False
    deadline = max(timedelta(seconds=spec.timeout_seconds), RUNTIME_REQUEST_TIMEOUT)
    return now - container.requested_at > deadline + grace


def _phase_of(containers: list[ContainerStatus]) -> Phase:
    if not containers:
        return Phase.PENDING
    open_ = [c for c in containers if c.phase not in _TERMINAL]
    if not open_:
        if any(c.phase == ContainerCapturePhase.FAILED for c in containers):
            return Phase.FAILED
        return Phase.COMPLETED
    lowest = min(open_, key=lambda c: _ORDER[c.phase]).phase
    return {
        ContainerCapturePhase.PENDING: Phase.PENDING,
        ContainerCapturePhase.CAPTURING: Phase.CAPTURING,
        ContainerCapturePhase.ANALYZING: Phase.ANALYZING,
    }[lowest]


def _failure(containers: list[ContainerStatus]) -> ContainerStatus | None:
    return next((c for c in containers if c.phase == ContainerCapturePhase.FAILED), None)


def aggregate(
    status: ForensicCheckpointStatus, *, ref: CheckpointRef, now: datetime
) -> ForensicCheckpointStatus:
    """Derive phase, message, conditions and the printer-column fields from the containers."""
    new = status.model_copy(deep=True)
    new.observed_generation = ref.generation
    if new.containers:
        new.phase = _phase_of(new.containers)
    elif new.phase != Phase.FAILED:
        new.phase = Phase.PENDING
    new.container_names = ",".join(c.name for c in new.containers)[:1100]
    sizes = [c.archive.size_bytes for c in new.containers if c.archive is not None]
    new.total_size = human_size(sum(sizes)) if sizes else ""
    new.frozen_time = _longest_freeze(new.containers)

    failed = _failure(new.containers)
    if failed is not None and new.phase == Phase.FAILED:
        new.reason = failed.reason
        new.message = _with_remediation(
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

    new.conditions = _conditions(new, ref=ref, now=now)
    return new


def _longest_freeze(containers: list[ContainerStatus]) -> str:
    """The printer column's freeze: the container frozen longest for its dump."""
    frozen = [
        (c.summary.dump_stats["frozenTime"], c.frozen_time)
        for c in containers
        if c.summary is not None and "frozenTime" in c.summary.dump_stats
    ]
    return max(frozen)[1] if frozen else ""


def _conditions(
    status: ForensicCheckpointStatus, *, ref: CheckpointRef, now: datetime
) -> list[Condition]:
    conditions = list(status.conditions)
    reason = status.reason or status.phase.value
    message = status.message

    def put(type_: str, value: ConditionStatus, why: str, text: str) -> None:
        nonlocal conditions
        conditions = set_condition(
            conditions,
            type_=type_,
            status=value,
            reason=why,
            message=text,
            generation=ref.generation,
            now=now,
        )

    containers = status.containers
    if status.phase == Phase.COMPLETED:
        put(READY, ConditionStatus.TRUE, "Completed", message)
    elif status.phase == Phase.FAILED:
        put(READY, ConditionStatus.FALSE, reason, message)
    else:
        put(READY, ConditionStatus.FALSE, status.phase.value, message or "in progress")

    captured = [c for c in containers if c.archive is not None]
    if containers and len(captured) == len(containers):
        put(CAPTURED, ConditionStatus.TRUE, "Captured", f"{len(captured)} archive(s) on the node")
    elif status.phase == Phase.FAILED:
        put(CAPTURED, ConditionStatus.FALSE, reason, message)
    else:
        put(CAPTURED, ConditionStatus.UNKNOWN, status.phase.value, "")

    analysed = [c for c in containers if c.phase == ContainerCapturePhase.COMPLETED]
    if containers and len(analysed) == len(containers):
        put(ANALYZED, ConditionStatus.TRUE, "Analyzed", "summary in status.containers[].summary")
    elif status.phase == Phase.FAILED:
        put(ANALYZED, ConditionStatus.FALSE, reason, message)
    else:
        put(ANALYZED, ConditionStatus.UNKNOWN, status.phase.value, "")

    suspicion = verdict(status)
    if suspicion is not None:
        value = ConditionStatus.TRUE if suspicion.suspicious else ConditionStatus.FALSE
        put(SUSPICIOUS, value, suspicion.reason, suspicion.message)
    return conditions


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
    new.conditions = _conditions(new, ref=ref, now=now)
    return new


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about a transition."""

    type: str  # "Normal" | "Warning"
    reason: str
    message: str


def transition_events(old: ForensicCheckpointStatus, new: ForensicCheckpointStatus) -> list[Event]:
    """Events for what changed between two statuses (none when nothing did, so a restarted
    operator does not repeat them)."""
    events: list[Event] = []
    before = {c.name: c for c in old.containers}
    if not old.containers and new.containers:
        events.append(
            Event(
                "Normal",
                "Resolved",
                f"checkpointing {new.container_names} of pod on node {new.node_name}",
            )
        )
    for container in new.containers:
        prev = before.get(container.name)
        prev_phase = prev.phase if prev else ContainerCapturePhase.PENDING
        # On the archive's first appearance, not on a phase: a fast capture and analysis can go
        # from Capturing to Completed between two polls.
        appeared = container.archive is not None and (prev is None or prev.archive is None)
        if appeared and container.orphan_archive and container.archive is not None:
            events.append(
                Event(
                    "Warning",
                    "OrphanArchive",
                    f"container {container.name}: the kubelet wrote the archive after the "
                    f"capture failed: {human_size(container.archive.size_bytes)}, sha256 "
                    f"{container.archive.sha256}, kept on the node (not analysed)",
                )
            )
        elif appeared and container.archive is not None:
            events.append(
                Event(
                    "Normal",
                    "Captured",
                    f"container {container.name}: {human_size(container.archive.size_bytes)} "
                    f"archive, sha256 {container.archive.sha256}",
                )
            )
        if container.phase == prev_phase:
            continue
        if (
            container.phase == ContainerCapturePhase.CAPTURING
            and prev_phase == ContainerCapturePhase.PENDING
        ):
            events.append(
                Event("Normal", "CaptureRequested", f"container {container.name}: agent asked")
            )
        elif container.phase == ContainerCapturePhase.FAILED:
            events.append(
                Event(
                    "Warning",
                    container.reason or "CaptureFailed",
                    _with_remediation(
                        f"container {container.name}: {container.message}", container.remediation
                    ),
                )
            )
    for container in new.containers:
        events.extend(_export_events(before.get(container.name), container))
    # Once per object: the condition is stored, so a restarted operator sees it was already True.
    suspicious = find_condition(new.conditions, SUSPICIOUS)
    was = find_condition(old.conditions, SUSPICIOUS)
    if (
        suspicious is not None
        and suspicious.status == ConditionStatus.TRUE
        and (was is None or was.status != ConditionStatus.TRUE)
    ):
        events.append(Event("Warning", SUSPICIOUS, suspicious.message[:1024]))
    if new.phase != old.phase and new.phase == Phase.COMPLETED:
        events.append(Event("Normal", "Completed", new.message))
    elif new.phase != old.phase and new.phase == Phase.FAILED and not new.containers:
        events.append(Event("Warning", new.reason or "Failed", new.message))
    return events


def _export_events(old: ContainerStatus | None, new: ContainerStatus) -> list[Event]:
    was = old.export.phase if old is not None and old.export is not None else ""
    export = new.export
    if export is None or export.phase == was:
        return []
    if export.phase == "Exported":
        return [
            Event(
                "Normal",
                "Exported",
                f"container {new.name}: {export.destination}, sha256 {export.sha256} verified",
            )
        ]
    if export.phase == "Failed":
        return [
            Event(
                "Warning",
                export.reason or "ExportFailed",
                f"container {new.name}: {export.message}"[:1024],
            )
        ]
    return []
