"""Each kubelet answer maps to the contract's reason (texts are the kubelet's own)."""

from __future__ import annotations

import importlib.util

import pytest

from forensic_checkpoint.agent import outcomes

FORBIDDEN = (
    "Forbidden (user=kube-apiserver-kubelet-client, verb=create, resource=nodes, "
    "subresource(s)=[checkpoint])"
)
EXITED = (
    "checkpointing of default/counter/app failed (rpc error: code = Unknown desc = container "
    '"0123" is in CONTAINER_EXITED state. only CONTAINER_RUNNING containers can be checkpointed)'
)
HAS_CLASSIFIER = importlib.util.find_spec("forensic_checkpoint.domain.capture_failures") is not None


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, "Unauthorized", "KubeletUnauthorized"),
        (403, FORBIDDEN, "KubeletForbidden"),
        (404, "404 page not found", "CheckpointingDisabled"),
        (404, "pod does not exist", "ContainerNotFound"),
        (404, "container app does not exist", "ContainerNotFound"),
        (500, EXITED, "ContainerNotRunning" if HAS_CLASSIFIER else "RuntimeError"),
        (302, "", "KubeletBadResponse"),
    ],
)
def test_http_outcome(status: int, body: str, reason: str) -> None:
    outcome = outcomes.classify_http(status, body, node="n1", target="default/counter/app")
    assert outcome.reason == reason
    assert outcome.status_code == status
    assert outcome.message


def test_forbidden_names_the_missing_permission() -> None:
    outcome = outcomes.classify_http(403, FORBIDDEN, node="n1", target="a/b/c")
    assert "create nodes/checkpoint" in outcome.message
    assert outcome.remediation is not None and "nodes/checkpoint" in outcome.remediation


def test_long_bodies_are_clipped() -> None:
    outcome = outcomes.classify_http(404, "pod does not exist " * 500, node="n", target="a/b/c")
    assert len(outcome.message) < outcomes.MAX_MESSAGE + 200
