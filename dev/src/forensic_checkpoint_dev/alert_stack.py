"""A dev cluster with agents and the operator serving alerts, and the alert bodies to send it:
shared by the alert queue's cluster tests and ``benchmarks.alert_burst``."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forensic_checkpoint.api.policy import ForensicCapturePolicy
from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.stack import LocalStack

POLICIES = "/apis/forensic-checkpoint.dev/v1alpha1/forensiccapturepolicies"


def notification(
    namespace: str, pods: Sequence[str], *, name: str = "Burst", **labels: str
) -> dict[str, Any]:
    """One firing Alertmanager notification with one alert per pod, in this order, each with
    a fingerprint of its own."""
    return {
        "version": "4",
        "status": "firing",
        "receiver": "forensics",
        "groupKey": "{}",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name, "namespace": namespace, "pod": pod, **labels},
                "startsAt": "2026-12-06T12:00:00Z",
                "fingerprint": secrets.token_hex(8),
            }
            for pod in pods
        ],
    }


@contextmanager
def alert_stack(
    root: Path,
    *,
    namespace: str,
    policy: str,
    nodes: int = 2,
    with_real_node: bool = False,
    operator_args: Sequence[str] = (),
) -> Iterator[tuple[DevCluster, LocalStack]]:
    """A dev cluster of ``nodes`` fake nodes (or the real node), an agent on each, a policy
    that captures every alert for ``namespace`` (all containers), and the operator with its
    receiver; everything stopped and removed afterwards."""
    cluster = DevCluster.start(
        root / "cluster", nodes=nodes, die_with_parent=True, with_real_node=with_real_node
    )
    stack: LocalStack | None = None
    api = cluster.admin_client()
    try:
        access.ensure_namespace(api, namespace)
        body = ForensicCapturePolicy.model_validate(
            {
                "metadata": {"name": policy},
                "spec": {"match": {"namespaces": [namespace]}, "capture": {"containers": "All"}},
            }
        )
        apiserver.request(api, "POST", POLICIES, body=body.to_kube())
        stack = LocalStack.prepare(cluster, root / "stack")
        for node in cluster.nodes:
            stack.start_agent(node.name)
        if cluster.real_node is not None:
            stack.start_agent(cluster.real_node.name)
        stack.start_operator([namespace], alerts=True, extra_args=tuple(operator_args))
        yield cluster, stack
    finally:
        if stack is not None:
            stack.stop()
        close(api)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
