"""A dev cluster with many fake node agents in this process and one Running pod per node: the
set-up of the operator benchmarks (``operator_scale``, ``operator_failover``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from forensic_checkpoint.k8s.client import ApiClient, close, from_environment
from forensic_checkpoint_dev.cluster import access
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.cluster.pods import create_running_pod
from forensic_checkpoint_dev.fake_agents import FakeAgentFleet
from forensic_checkpoint_dev.stack import LocalStack


@dataclass
class FleetCluster:
    api: ApiClient  #: an administrator's client
    stack: LocalStack
    fleet: FakeAgentFleet
    pods: list[str]  #: one per node, in ``namespace``
    work: Path  #: a scratch directory, removed at the end


@contextmanager
def fleet_cluster(
    prefix: str, namespace: str, nodes: int, *, node_prefix: str, capture_seconds: float = 0.5
) -> Iterator[FleetCluster]:
    """Everything is stopped and removed on exit, whatever happened."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = DevCluster.start(work / "cluster", nodes=1, die_with_parent=True)
    api = cluster.admin_client()
    stack: LocalStack | None = None
    fleet: FakeAgentFleet | None = None
    agent_api: ApiClient | None = None
    try:
        access.ensure_namespace(api, namespace)
        stack = LocalStack.prepare(cluster, work / "stack")
        agent_api = from_environment(str(stack.agent.kubeconfig))
        names = [f"{node_prefix}-{i:03d}" for i in range(nodes)]
        fleet = FakeAgentFleet(stack, agent_api, api, names, capture_seconds=capture_seconds)
        fleet.start()
        pods = [f"pod-{i:03d}" for i in range(nodes)]
        for pod, node in zip(pods, names, strict=True):
            create_running_pod(api, namespace, pod, node)
        yield FleetCluster(api, stack, fleet, pods, work)
    finally:
        if fleet is not None:
            fleet.stop()
        if agent_api is not None:
            close(agent_api)
        if stack is not None:
            stack.stop()
        close(api)
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
