"""Helpers for the alert tests: captured payloads, policy builders, a hand-moved clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.api.policy import ForensicCapturePolicy, ForensicCapturePolicyStatus
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.alert_captures import PodContainers

DATA = Path(__file__).parent / "data"


def payload(name: str) -> dict[str, Any]:
    """A payload captured from the real sender (see data/README.md)."""
    result: dict[str, Any] = json.loads((DATA / name).read_text())
    return result


def policy(name: str = "default", **spec: Any) -> ForensicCapturePolicy:
    return ForensicCapturePolicy.model_validate({"metadata": {"name": name}, "spec": spec})


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryBackend:
    """The cluster as the receiver sees it, in memory: for the HTTP-level tests (auth, size,
    schema, TLS). What the receiver does against a real API server is in test_receiver_cluster."""

    def __init__(self, policies: list[ForensicCapturePolicy] | None = None) -> None:
        self.policy_list = policies if policies is not None else [policy("catch-all")]
        self.pods: dict[tuple[str, str], PodContainers] = {
            ("default", "counter"): PodContainers(
                names=("counter",),
                ids={"counter": "3ad7b26ded6d9f2e4c1a0b7d8e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f"},
            ),
            ("default", "counter-2"): PodContainers(names=("counter",), ids={}),
        }
        self.created: dict[str, ForensicCheckpoint] = {}
        self.statuses: dict[str, ForensicCapturePolicyStatus] = {}
        #: (policy, type, reason, message) of every Event posted
        self.events: list[tuple[str, str, str, str]] = []
        self.fail_creates = False
        self.fail_policies = False

    async def policies(self) -> list[ForensicCapturePolicy]:
        if self.fail_policies:
            raise ClusterError("list forensiccapturepolicies: API server unreachable")
        return list(self.policy_list)

    async def active_captures(self) -> set[str]:
        return set()

    async def write_policy_status(self, name: str, status: ForensicCapturePolicyStatus) -> None:
        self.statuses[name] = status

    async def pod_containers(self, namespace: str, pod: str) -> PodContainers | None:
        return self.pods.get((namespace, pod))

    async def post_policy_event(
        self, policy: ForensicCapturePolicy, type_: str, reason: str, message: str
    ) -> None:
        self.events.append((policy.name, type_, reason, message))

    async def create(self, checkpoint: ForensicCheckpoint) -> bool:
        if self.fail_creates:
            raise ClusterError("create forensiccheckpoint: 500 etcdserver: request timed out")
        key = f"{checkpoint.metadata['namespace']}/{checkpoint.metadata['name']}"
        if key in self.created:
            return False
        self.created[key] = checkpoint
        return True


def storm(
    count: int, *, namespace: str, pods: int = 0, alertname: str = "Storm", first: int = 0
) -> dict[str, Any]:
    """An Alertmanager notification of ``count`` firing alerts as a storm sends them: a dozen
    labels, two annotations and a generatorURL each (about 700 bytes; 6,500 alerts are
    4.4 MiB), distinct fingerprints (numbered from ``first``: another storm's are new alerts, not
    duplicates). With ``pods``, alert ``i`` names pod ``victim-<i % pods>`` (container ``app``);
    without, each names its own pod ``p<i>``."""
    query = "sum+by%28namespace%2C+pod%29+%28rate%28falco_events%5B1m%5D%29%29+%3E+0"
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": alertname,
                "namespace": namespace,
                "pod": f"victim-{i % pods}" if pods else f"p{i}",
                "container": "app",
                "severity": "critical",
                "job": "kubernetes-pods",
                "instance": f"10.0.{i % 250}.{i % 200}:8080",
                "service": "payments-api",
                "prometheus": "monitoring/k8s",
            },
            "annotations": {
                "summary": "Suspicious process in container",
                "description": "A shell was spawned in a container with an attached terminal "
                "(user=root command=sh -i)",
            },
            "startsAt": "2026-12-06T11:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": f"http://prometheus-k8s-0:9090/graph?g0.expr={query}&g0.tab=1",
            "fingerprint": f"{first + i:016x}",
        }
        for i in range(count)
    ]
    return {
        "version": "4",
        "status": "firing",
        "receiver": "forensics",
        "groupKey": '{}:{alertname="' + alertname + '"}',
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "namespace": namespace},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }
