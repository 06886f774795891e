"""Prometheus metrics of one agent, on a private registry (tests run several agents per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_SIZE_BUCKETS = tuple(float(2**n) for n in range(20, 36, 2))  # 1 MiB .. 16 GiB


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.captures = Counter(
            "forensic_agent_captures",
            "Finished capture jobs by outcome (Completed or the failure reason).",
            ["outcome"],
            registry=self.registry,
        )
        self.capture_seconds = Histogram(
            "forensic_agent_capture_duration_seconds",
            "Kubelet checkpoint call plus hashing, per capture.",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.analysis_seconds = Histogram(
            "forensic_agent_analysis_duration_seconds",
            "Analysis of one archive.",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.archive_bytes = Counter(
            "forensic_agent_archive_bytes",
            "Bytes of checkpoint archives captured.",
            registry=self.registry,
        )
        self.archive_size = Histogram(
            "forensic_agent_archive_size_bytes",
            "Size of each captured archive.",
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "forensic_agent_queue_depth",
            "Capture jobs accepted but not yet started.",
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "forensic_agent_captures_in_progress",
            "Capture jobs being captured or analysed now.",
            registry=self.registry,
        )
        self.kubelet_errors = Counter(
            "forensic_agent_kubelet_errors",
            "Failed kubelet checkpoint calls by HTTP status code (or 'none' without an answer).",
            ["code"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "forensic_agent_http_requests",
            "API requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
