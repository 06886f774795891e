"""Where a job's time goes (``status.timings``): each stage's milliseconds, set when it ends,
and observed in the ``forensic_checkpoint_agent_stage_duration_seconds`` histogram.

The split tells an analyst whether a slow capture was the runtime's dump (``kubeletMs``) or
the agent's own work after it (hash, analysis), which the agent can do something about.
"""

from __future__ import annotations

import time
from datetime import datetime

from forensic_checkpoint.agent.jobs import JobRecord
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.api.agent import CaptureTimings


def millis(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _timings(record: JobRecord) -> CaptureTimings:
    if record.status.timings is None:
        record.status.timings = CaptureTimings()
    return record.status.timings


def queued(record: JobRecord, now: datetime) -> CaptureTimings:
    """The timings of a job about to call the kubelet: how long it waited for that."""
    accepted = record.accepted_at or now
    return CaptureTimings(queued_ms=millis((now - accepted).total_seconds()))


def kubelet_done(record: JobRecord, started: float, metrics: AgentMetrics) -> None:
    """The kubelet call (``started``: its ``time.monotonic()``) has answered or failed."""
    value = _timings(record).kubelet_ms = millis(time.monotonic() - started)
    metrics.observe_stage("kubelet", value)


def hash_done(record: JobRecord, started: float, metrics: AgentMetrics) -> None:
    value = _timings(record).hash_ms = millis(time.monotonic() - started)
    metrics.observe_stage("hash", value)


def analysis_done(record: JobRecord, started: float, metrics: AgentMetrics) -> None:
    """The analysis has ended; it ran beside the hash, so the two overlap."""
    value = _timings(record).analysis_ms = millis(time.monotonic() - started)
    metrics.observe_stage("analysis", value)
