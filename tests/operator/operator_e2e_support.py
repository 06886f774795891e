"""Helpers shared by the operator end-to-end tests, which all run on the `stack` fixture."""

from __future__ import annotations

from typing import Any

from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster.fake_nodes import FakeNode
from forensic_checkpoint_dev.stack import LocalStack

NAMESPACE = "fcp-e2e"  # the namespace the operator of the `stack` fixture watches


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
