"""Prometheus metrics of one agent, on a private registry (tests run several agents per process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: () -> (jobs by state, bytes of archives and reports on disk); read at scrape time.
StorageReader = Callable[[], tuple[dict[str, int], int]]

#: () -> (node, Ready status "True"/"False"/"Unknown", reason) of the last readiness round, or
#: None before the first.
ReadinessReader = Callable[[], tuple[str, str, str] | None]
#: () -> certificate ("kubelet-client", "serving") -> its not-after, None while there is none.
CertificateExpiry = Callable[[], dict[str, datetime | None]]

_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_SIZE_BUCKETS = tuple(float(2**n) for n in range(20, 36, 2))  # 1 MiB .. 16 GiB


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.captures = Counter(
            "forensic_checkpoint_agent_captures",
            "Finished capture jobs by outcome (Completed or the failure reason).",
            ["outcome"],
            registry=self.registry,
        )
        self.capture_seconds = Histogram(
            "forensic_checkpoint_agent_capture_duration_seconds",
            "The kubelet checkpoint call, per capture (the hash follows, beside the analysis).",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.analysis_seconds = Histogram(
            "forensic_checkpoint_agent_analysis_duration_seconds",
            "Analysis of one archive.",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "forensic_checkpoint_agent_stage_duration_seconds",
            "Each stage of a capture job: queued (to the kubelet call), kubelet, hash, analysis.",
            ["stage"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.archive_bytes = Counter(
            "forensic_checkpoint_agent_archive_bytes",
            "Bytes of checkpoint archives captured.",
            registry=self.registry,
        )
        self.archive_size = Histogram(
            "forensic_checkpoint_agent_archive_size_bytes",
            "Size of each captured archive.",
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "forensic_checkpoint_agent_queue_depth",
            "Capture jobs waiting for a worker (to capture, or to be analysed).",
            registry=self.registry,
        )
        self.queue_refusals = Counter(
            "forensic_checkpoint_agent_queue_refusals",
            "New captures refused (503 AgentQueueFull) because --max-queued-captures jobs were "
            "waiting for a worker; the operator asks again.",
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "forensic_checkpoint_agent_captures_in_progress",
            "Capture jobs a capture or analysis worker holds now.",
            registry=self.registry,
        )
        self.kubelet_errors = Counter(
            "forensic_checkpoint_agent_kubelet_errors",
            "Failed kubelet checkpoint calls by HTTP status code (or 'none' without an answer).",
            ["code"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "forensic_checkpoint_agent_http_requests",
            "API requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )

        self.exports = Counter(
            "forensic_checkpoint_agent_exports",
            "Export attempts by outcome (Exported or the failure reason).",
            ["outcome"],
            registry=self.registry,
        )
        self.export_bytes = Counter(
            "forensic_checkpoint_agent_export_bytes",
            "Bytes of objects uploaded to evidence storage.",
            registry=self.registry,
        )
        self.retention_deletions = Counter(
            "forensic_checkpoint_agent_retention_deletions",
            "Archives deleted by retention, by the bound they broke (RetentionMaxAge, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.retention_bytes = Gauge(
            "forensic_checkpoint_agent_retention_archive_bytes",
            "Bytes of archives on the node after the last retention pass (held ones included).",
            registry=self.registry,
        )
        self.retention_held_bytes = Gauge(
            "forensic_checkpoint_agent_retention_held_bytes",
            "Bytes of archives under legal hold at the last retention pass.",
            registry=self.registry,
        )
        self.retention_deferred = Gauge(
            "forensic_checkpoint_agent_retention_deferred",
            "Archives retention would delete but keeps because they are not exported yet.",
            registry=self.registry,
        )
        self.orphan_archives = Counter(
            "forensic_checkpoint_agent_orphan_archives",
            "Archives no capture claimed (written after the agent gave up on the kubelet call, or "
            "by another caller), by what --orphan-archives did: attached (to the capture that "
            "caused it), adopted (a job of its own) or deleted; late-deleted or late-kept (held): "
            "the archive of a capture deleted while in flight.",
            ["action"],
            registry=self.registry,
        )

    def observe_stage(self, stage: str, millis: int | None) -> None:
        """One stage of a job took ``millis`` (see :mod:`.capture.timings`)."""
        if millis is not None:
            self.stage_seconds.labels(stage=stage).observe(millis / 1000)

    def watch_storage(self, reader: StorageReader) -> None:
        """Report the job store (jobs by state, bytes kept) whenever metrics are scraped."""
        self.registry.register(_OnScrape(lambda: _storage(reader)))

    def watch_readiness(self, reader: ReadinessReader) -> None:
        """Report the node's capture readiness (the ForensicNode's Ready condition)."""
        self.registry.register(_OnScrape(lambda: _readiness(reader)))

    def watch_certificates(self, expiry: CertificateExpiry) -> None:
        """Report when the agent's certificates expire, asked at each scrape (a renewal or a
        rotated Secret shows at the next one)."""
        self.registry.register(_OnScrape(lambda: _certificates(expiry)))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _OnScrape(Collector):
    """Gauges computed at each scrape by ``families``."""

    def __init__(self, families: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
        self._families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def _storage(reader: StorageReader) -> Iterator[GaugeMetricFamily]:
    by_state, stored = reader()
    jobs = GaugeMetricFamily(
        "forensic_checkpoint_agent_jobs", "Capture jobs on disk by state.", labels=["state"]
    )
    for state, count in sorted(by_state.items()):
        jobs.add_metric([state], count)
    yield jobs
    yield GaugeMetricFamily(
        "forensic_checkpoint_agent_stored_bytes",
        "Bytes of archives and reports the agent keeps on the node.",
        value=stored,
    )


def _readiness(reader: ReadinessReader) -> Iterator[GaugeMetricFamily]:
    ready = GaugeMetricFamily(
        "forensic_checkpoint_agent_node_ready",
        "1 when the node can capture (ForensicNode Ready=True), else 0; status and reason "
        "of the Ready condition as labels.",
        labels=["node", "status", "reason"],
    )
    last = reader()
    if last is not None:
        node, status, reason = last
        ready.add_metric([node, status, reason], 1 if status == "True" else 0)
    yield ready


def _certificates(expiry: CertificateExpiry) -> Iterator[GaugeMetricFamily]:
    family = GaugeMetricFamily(
        "forensic_checkpoint_agent_certificate_expiry_timestamp_seconds",
        "Not-after of the agent's certificates as a unix time: kubelet-client (its kubelet "
        "client certificate) and serving.",
        labels=["certificate"],
    )
    for name, not_after in sorted(expiry().items()):
        if not_after is not None:
            family.add_metric([name], not_after.timestamp())
    yield family
