"""Each kubelet answer maps to the contract's reason (texts are the kubelet's own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forensic_checkpoint.agent.kubelet import outcomes
from forensic_checkpoint.agent.kubelet.criu_logs import LocalCriuLogs
from forensic_checkpoint.domain.failures.classify import classify_capture_failure

FORBIDDEN = (
    "Forbidden (user=kube-apiserver-kubelet-client, verb=create, resource=nodes, "
    "subresource(s)=[checkpoint])"
)
EXITED = (
    "checkpointing of default/counter/app failed (rpc error: code = Unknown desc = container "
    '"0123" is in CONTAINER_EXITED state. only CONTAINER_RUNNING containers can be checkpointed)'
)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, "Unauthorized", "KubeletUnauthorized"),
        (403, FORBIDDEN, "KubeletForbidden"),
        (404, "404 page not found", "CheckpointingDisabled"),
        (404, "pod does not exist", "ContainerNotFound"),
        (404, "container app does not exist", "ContainerNotFound"),
        (500, EXITED, "ContainerNotRunning"),
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


@pytest.mark.parametrize(
    ("status", "body"),
    [(401, "Unauthorized"), (403, FORBIDDEN), (404, "404 page not found"), (500, EXITED)],
)
def test_captures_and_the_readiness_probe_share_one_classifier(status: int, body: str) -> None:
    outcome = outcomes.classify_http(status, body, node="n1", target="default/counter/app")
    failure = classify_capture_failure(status_code=status, body=body)
    assert (outcome.reason, outcome.remediation) == (failure.reason.value, failure.remediation)
    assert outcome.message.startswith(failure.message)
    assert "kubelet on n1" in outcome.message


def test_a_readable_criu_log_refines_a_runtime_failure(tmp_path: Path) -> None:
    log = tmp_path / "0123abc" / "criu-dump.log"  # <runtime dir>/<container id>/criu-dump.log
    log.parent.mkdir()
    log.write_text(
        "(00.044770) Error (criu/sk-inet.c:188): Connected TCP socket, consider using "
        "--tcp-established option.\n(00.121302) Error (criu/cr-dump.c:2128): Dumping FAILED.\n"
    )
    body = (
        "checkpointing of default/counter/app failed (rpc error: code = Unknown desc = runc "
        f"checkpoint failed: criu failed: type NOTIFY errno 0 path= {log}: unknown)"
    )
    logs = LocalCriuLogs((tmp_path,))
    outcome = outcomes.classify_http(
        500, body, node="n1", target="default/counter/app", criu_logs=logs
    )
    assert outcome.reason == "EstablishedTCPNeedsConfig"
    assert (
        outcome.criu_log_excerpt is not None and "Connected TCP socket" in outcome.criu_log_excerpt
    )
    unreadable = outcomes.classify_http(
        500,
        body.replace(str(log), "/nonexistent/criu-dump.log"),
        node="n1",
        target="a/b/c",
        criu_logs=logs,
    )
    assert (unreadable.reason, unreadable.criu_log_excerpt) == ("RuntimeError", None)


def test_transport_failures_name_the_node_and_what_happened() -> None:
    waited = outcomes.timeout("n1", "a/b/c", 1.5)
    assert waited.reason == "Timeout" and "within 1.5 s" in waited.message
    assert outcomes.tls_error("n1", "bad cert").reason == "KubeletTLSError"
    refused = outcomes.unreachable("n1", "connection refused")
    assert refused.reason == "KubeletUnreachable" and "connection refused" in refused.message
    assert refused.remediation
