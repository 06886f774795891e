"""Prometheus metrics of the operator (served by ``prometheus_client`` on ``--metrics-port``)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpointStatus

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

KEPT_ARCHIVES = Gauge(
    "forensic_checkpoint_operator_kept_archives",
    "Archives kept on the nodes that the operator follows with one batched call per agent.",
)
KEPT_SWEEP_SECONDS = Histogram(
    "forensic_checkpoint_operator_kept_archive_sweep_seconds",
    "Time of one pass over every node's kept archives (one agent call per node).",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)


def observe_transition(
    old: ForensicCheckpointStatus, new: ForensicCheckpointStatus, *, created: str | None
) -> None:
    if old.phase == new.phase or not new.phase.terminal:
        return
    CHECKPOINTS_FINISHED.labels(phase=new.phase.value, reason=new.reason or "").inc()
    if created and new.completed_at is not None:
        start = datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC)
        CHECKPOINT_DURATION.observe(max(0.0, (new.completed_at - start).total_seconds()))
