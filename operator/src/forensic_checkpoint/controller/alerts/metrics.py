"""Prometheus metrics of the alert receiver. Labels are low-cardinality on purpose: source,
decision reason, route and status code, never alert names or pods (those go to the log)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class AlertMetrics:
    alerts: Counter
    requests: Counter
    latency: Histogram
    created: Counter
    refused: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AlertMetrics:
        return cls(
            alerts=Counter(
                "forensic_checkpoint_alerts_total",
                "Alerts received, by source and decision reason (Capture, Duplicate, ...).",
                ["source", "reason"],
                registry=registry,
            ),
            requests=Counter(
                "forensic_checkpoint_alert_requests_total",
                "Webhook requests, by route and HTTP status.",
                ["route", "code"],
                registry=registry,
            ),
            latency=Histogram(
                "forensic_checkpoint_alert_request_seconds",
                "Time to answer a webhook request.",
                ["route"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
                registry=registry,
            ),
            created=Counter(
                "forensic_checkpoint_alert_checkpoints_created_total",
                "ForensicCheckpoints created from alerts.",
                ["source"],
                registry=registry,
            ),
            refused=Counter(
                "forensic_checkpoint_alert_bodies_refused_total",
                "Bodies refused before any decision, by route and reason (TooLarge, InvalidJson, "
                "TooDeep, SchemaViolation).",
                ["route", "reason"],
                registry=registry,
            ),
        )


_SHARED: dict[CollectorRegistry, AlertMetrics] = {}


def metrics_for(registry: CollectorRegistry | None = None) -> AlertMetrics:
    """One set of metrics per registry (registering twice in one registry is an error)."""
    registry = registry or REGISTRY
    if registry not in _SHARED:
        _SHARED[registry] = AlertMetrics.create(registry)
    return _SHARED[registry]
