"""Helpers shared by the operator end-to-end tests, which all run on the `stack` fixture."""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access, binaries
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.cluster.fake_nodes import FakeNode
from forensic_checkpoint_dev.stack import LocalStack

NAMESPACE = "fcp-e2e"  # the namespace the operator of the `stack` fixture watches
NODES = ("node-1", "node-2", "node-3")


@contextmanager
def agents_stack(root: Path, namespace: str) -> Iterator[LocalStack]:
    """A dev cluster of ``NODES``, ``namespace``, and an agent on each node (no operator yet)."""
    if binaries.missing():
        if not binaries.go_available():
            pytest.skip("cluster tools are not built and no Go toolchain is installed")
        binaries.ensure(build=True)
    cluster = DevCluster.start(root / "cluster", nodes=len(NODES), die_with_parent=True)
    atexit.register(cluster.stop)
    local: LocalStack | None = None
    try:
        api = cluster.admin_client()
        access.ensure_namespace(api, namespace)
        close(api)
        local = LocalStack.prepare(cluster, root / "stack")
        for node in NODES:
            local.start_agent(node)
        yield local
    finally:
        if local is not None:
            local.stop()
        cluster.stop()
        atexit.unregister(cluster.stop)


def create_pod(stack: LocalStack, name: str, node: str, **kwargs: Any) -> None:
    stack.cluster.create_running_pod(NAMESPACE, name, node, **kwargs)


def kubelet_calls(stack: LocalStack, node: str, pod: str) -> list[dict[str, Any]]:
    """The checkpoint calls the node's fake kubelet received for this pod (readiness probes,
    which name a pod that cannot exist, are left out)."""
    return [c for c in fake_node(stack, node).calls() if f"/{NAMESPACE}/{pod}/" in c["path"]]


def fake_node(stack: LocalStack, name: str) -> FakeNode:
    """The dev cluster's fake node ``name`` (these tests drive its kubelet)."""
    node = stack.cluster.node(name)
    assert isinstance(node, FakeNode), f"{name} is not a fake node"
    return node


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def events(stack: LocalStack, name: str) -> list[dict[str, Any]]:
    """The Kubernetes Events about the object called ``name`` in the e2e namespace."""
    api = stack.cluster.admin_client()
    try:
        return list(
            apiserver.request(
                api,
                "GET",
                f"/api/v1/namespaces/{NAMESPACE}/events",
                query={"fieldSelector": f"involvedObject.name={name}"},
            )["items"]
        )
    finally:
        close(api)
