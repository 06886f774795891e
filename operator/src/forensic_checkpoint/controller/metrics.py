"""Prometheus metrics of the operator (served by ``prometheus_client`` on ``--metrics-port``)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

from forensic_checkpoint.api.forensiccheckpoint import ContainerStatus, ForensicCheckpointStatus

CHECKPOINTS_FINISHED = Counter(
    "forensic_checkpoint_operator_checkpoints_total",
    "ForensicCheckpoints that reached a final phase, by phase and reason.",
    ["phase", "reason"],
)
CHECKPOINT_DURATION = Histogram(
    "forensic_checkpoint_operator_checkpoint_duration_seconds",
    "Time from a ForensicCheckpoint's creation to its final phase.",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)

REPORT_DELAY = Histogram(
    "forensic_checkpoint_operator_report_delay_seconds",
    "From the agent finishing a capture job to the operator writing the container's final phase.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
LEADER = Gauge(
    "forensic_checkpoint_operator_leader",
    "1 while this replica holds the operator's Lease and acts, 0 on a standby (leader election).",
)
KEPT_ARCHIVES = Gauge(
    "forensic_checkpoint_operator_kept_archives",
    "Archives kept on the nodes that the operator follows with one batched call per agent.",
)
CAPTURE_TASKS = Gauge(
    "forensic_checkpoint_operator_capture_tasks",
    "ForensicCheckpoints in flight (a capture, an export or a late archive) with a task of "
    "their own; a finished one has none.",
)
KEPT_SWEEP_SECONDS = Histogram(
    "forensic_checkpoint_operator_kept_archive_sweep_seconds",
    "Time of one pass over every node's kept archives (one agent call per node).",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)


def observe_transition(
    old: ForensicCheckpointStatus, new: ForensicCheckpointStatus, *, created: str | None
) -> None:
    reported = {c.name for c in old.containers if _report_ms(c) is not None}
    for container in new.containers:
        delay = _report_ms(container)
        if delay is not None and container.name not in reported:
            REPORT_DELAY.observe(delay / 1000)
    if old.phase == new.phase or not new.phase.terminal:
        return
    CHECKPOINTS_FINISHED.labels(phase=new.phase.value, reason=new.reason or "").inc()
    if created and new.completed_at is not None:
        start = datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC)
        CHECKPOINT_DURATION.observe(max(0.0, (new.completed_at - start).total_seconds()))


def _report_ms(container: ContainerStatus) -> int | None:
    return container.timings.report_ms if container.timings else None
