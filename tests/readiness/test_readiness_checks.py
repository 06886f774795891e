"""Per-node readiness from probe facts: table tests with the kubelet's recorded texts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from forensic_checkpoint.api.conditions import ConditionStatus
from forensic_checkpoint.api.forensicnode import CheckStatus, ForensicNode, ForensicNodeStatus
from forensic_checkpoint.domain.failures.classify import classify_capture_failure
from forensic_checkpoint.domain.failures.model import FailureReason, TransportFailure
from forensic_checkpoint.domain.readiness import (
    PROBE_PATH,
    TABLE_COLUMNS,
    AccessReview,
    CanaryOutcome,
    CheckName,
    CriuConfigObservation,
    KubeletProbe,
    NodeProbe,
    Readiness,
    capture_blocker,
    evaluate,
    parse_version,
    table_row,
    to_status,
)

DATA = Path(__file__).parent / "data"


def text(name: str) -> str:
    return (DATA / name).read_text()


POD_MISSING = KubeletProbe(404, text("kubelet-404-pod.body.txt"))
GATE_OFF = KubeletProbe(404, text("kubelet-404-gate-off.body.txt"))
FORBIDDEN = KubeletProbe(403, text("kubelet-403.body.txt"))
MANAGED = CriuConfigObservation("Managed", tcp_established=True, ghost_limit_bytes=256 << 20)
HEALTHY = NodeProbe(
    container_runtime_version="containerd://2.0.0",
    kubelet_version="v1.31.2",
    kubelet=POD_MISSING,
    access_review=AccessReview(allowed=True),
    criu_config=MANAGED,
)


def healthy(**changes: Any) -> NodeProbe:
    return dataclasses.replace(HEALTHY, **changes)


def traced_canary() -> CanaryOutcome:
    desc = text("containerd-criu-failed.desc.txt")
    failure = classify_capture_failure(
        status_code=500,
        body=f"checkpointing of {PROBE_PATH.split('/', 2)[2]} failed "
        f"(rpc error: code = Unknown desc = {desc})",
        criu_log=text("containerd-ptrace-strace.dump.log"),
    )
    return CanaryOutcome(succeeded=False, failure=failure)


@dataclass(frozen=True)
class Case:
    name: str
    probe: NodeProbe
    ready: ConditionStatus
    reason: str
    failing: CheckName | None = None  # the check that carries the reason


CASES = [
    Case("healthy containerd", HEALTHY, ConditionStatus.TRUE, "CaptureReady"),
    Case(
        "healthy cri-o",
        healthy(container_runtime_version="cri-o://1.26.4"),
        ConditionStatus.TRUE,
        "CaptureReady",
    ),
    Case(
        "gate off",
        healthy(kubelet=GATE_OFF),
        ConditionStatus.FALSE,
        FailureReason.CHECKPOINTING_DISABLED,
        CheckName.FEATURE_GATE,
    ),
    Case(
        "containerd 1.7 too old",
        healthy(container_runtime_version="containerd://1.7.22"),
        ConditionStatus.FALSE,
        FailureReason.RUNTIME_UNSUPPORTED,
        CheckName.RUNTIME,
    ),
    Case(
        "cri-o 1.24 too old",
        healthy(container_runtime_version="cri-o://1.24.6"),
        ConditionStatus.FALSE,
        FailureReason.RUNTIME_UNSUPPORTED,
        CheckName.RUNTIME,
    ),
    Case(
        "docker has no CRI checkpoint",
        healthy(container_runtime_version="docker://24.0.7"),
        ConditionStatus.FALSE,
        FailureReason.RUNTIME_UNSUPPORTED,
        CheckName.RUNTIME,
    ),
    Case(
        "no authorisation: the kubelet says 403",
        healthy(kubelet=FORBIDDEN),
        ConditionStatus.FALSE,
        FailureReason.KUBELET_FORBIDDEN,
        CheckName.AUTHORIZATION,
    ),
    Case(
        "the kubelet's 403 beats an allowing access review",
        healthy(kubelet=FORBIDDEN, access_review=AccessReview(allowed=True)),
        ConditionStatus.FALSE,
        FailureReason.KUBELET_FORBIDDEN,
        CheckName.AUTHORIZATION,
    ),
    Case(
        "access review denies, kubelet not reached",
        healthy(
            kubelet=KubeletProbe(None, transport=TransportFailure.TIMEOUT),
            access_review=AccessReview(allowed=False, reason="no RBAC policy matched"),
        ),
        ConditionStatus.FALSE,
        FailureReason.KUBELET_FORBIDDEN,
        CheckName.AUTHORIZATION,
    ),
    Case(
        "unauthenticated is blamed before authorisation",
        healthy(
            kubelet=KubeletProbe(401, "Unauthorized"), access_review=AccessReview(allowed=False)
        ),
        ConditionStatus.FALSE,
        FailureReason.KUBELET_UNAUTHORIZED,
        CheckName.KUBELET_AUTHENTICATION,
    ),
    Case(
        "kubelet certificate not verifiable",
        healthy(kubelet=KubeletProbe(None, transport=TransportFailure.TLS)),
        ConditionStatus.FALSE,
        FailureReason.KUBELET_TLS_ERROR,
        CheckName.KUBELET_TLS,
    ),
    Case(
        "agent skips verification",
        healthy(kubelet=KubeletProbe(404, text("kubelet-404-pod.body.txt"), tls_verified=False)),
        ConditionStatus.FALSE,
        FailureReason.KUBELET_TLS_ERROR,
        CheckName.KUBELET_TLS,
    ),
    Case(
        "kubelet port closed",
        healthy(kubelet=KubeletProbe(None, transport=TransportFailure.REFUSED)),
        ConditionStatus.FALSE,
        FailureReason.KUBELET_UNREACHABLE,
        CheckName.KUBELET_TLS,
    ),
    Case(
        "kubelet 1.24 predates the API",
        healthy(
            kubelet=KubeletProbe(None, transport=TransportFailure.TIMEOUT),
            kubelet_version="v1.24.17",
        ),
        ConditionStatus.FALSE,
        FailureReason.CHECKPOINTING_DISABLED,
        CheckName.FEATURE_GATE,
    ),
    Case("nothing probed yet", NodeProbe(), ConditionStatus.UNKNOWN, "NotProbedYet"),
    Case(
        "probe timed out on a current kubelet",
        healthy(kubelet=KubeletProbe(None, transport=TransportFailure.TIMEOUT)),
        ConditionStatus.UNKNOWN,
        FailureReason.TIMEOUT,
    ),
    Case(
        "no CRIU configuration is a warning",
        healthy(criu_config=CriuConfigObservation("Absent")),
        ConditionStatus.TRUE,
        "CaptureReadyWithWarnings",
        CheckName.CRIU_CONFIG,
    ),
    Case(
        "foreign CRIU file with tcp-established is fine",
        healthy(criu_config=CriuConfigObservation("Foreign", tcp_established=True)),
        ConditionStatus.TRUE,
        "CaptureReady",
    ),
    Case(
        "CRIU configuration conflict is a warning",
        healthy(criu_config=CriuConfigObservation("Conflict", message="not ours")),
        ConditionStatus.TRUE,
        "CaptureReadyWithWarnings",
        CheckName.CRIU_CONFIG,
    ),
    Case(
        "canary hit a traced task",
        healthy(canary=traced_canary()),
        ConditionStatus.FALSE,
        FailureReason.TRACED_TASK,
        CheckName.CANARY,
    ),
    Case(
        "canary captured",
        healthy(canary=CanaryOutcome(succeeded=True)),
        ConditionStatus.TRUE,
        "CaptureReady",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_evaluate(case: Case) -> None:
    readiness = evaluate(case.probe)
    assert (readiness.status, readiness.reason) == (case.ready, case.reason), readiness.message
    if case.failing is not None:
        check = next(c for c in readiness.checks if c.name is case.failing)
        assert check.status is CheckStatus.FAILED
        assert check.reason == case.reason or case.ready is ConditionStatus.TRUE
        assert check.message
        if case.ready is ConditionStatus.FALSE:
            assert check.remediation, "a failing blocking check says what to do"
    if case.ready is ConditionStatus.TRUE and case.reason == "CaptureReady":
        assert all(c.status is CheckStatus.PASSED for c in readiness.checks)


def test_every_check_is_reported_once() -> None:
    names = [c.name for c in evaluate(healthy(canary=CanaryOutcome(True))).checks]
    assert sorted(names) == sorted(CheckName)


def test_probe_answers_prove_gate_and_authorisation_together() -> None:
    # "pod does not exist" can only come from the handler, after authn and authz passed.
    checks = {c.name: c for c in evaluate(healthy(access_review=None)).checks}
    assert checks[CheckName.FEATURE_GATE].status is CheckStatus.PASSED
    assert checks[CheckName.AUTHORIZATION].status is CheckStatus.PASSED
    assert checks[CheckName.KUBELET_AUTHENTICATION].status is CheckStatus.PASSED


def test_an_auth_answer_proves_the_route_exists() -> None:
    # Without the gate the kubelet has no /checkpoint route, and answers 404 before any auth
    # filter runs; a 401 or 403 therefore comes from behind an installed route.
    for probe in (KubeletProbe(401, "Unauthorized"), FORBIDDEN):
        gate = next(
            c for c in evaluate(healthy(kubelet=probe)).checks if c.name is CheckName.FEATURE_GATE
        )
        assert gate.status is CheckStatus.PASSED


def test_gate_off_proves_nothing_about_credentials() -> None:
    checks = {c.name: c for c in evaluate(healthy(kubelet=GATE_OFF, access_review=None)).checks}
    assert checks[CheckName.KUBELET_AUTHENTICATION].status is CheckStatus.UNKNOWN
    assert checks[CheckName.AUTHORIZATION].status is CheckStatus.UNKNOWN


def test_gate_unknown_without_an_answer_names_the_kubelet_default() -> None:
    timeout = KubeletProbe(None, transport=TransportFailure.TIMEOUT)
    for version, default in (("v1.31.2", "on"), ("v1.28.9", "off")):
        readiness = evaluate(healthy(kubelet=timeout, kubelet_version=version))
        gate = next(c for c in readiness.checks if c.name is CheckName.FEATURE_GATE)
        assert gate.status is CheckStatus.UNKNOWN
        assert f"gate {default} by default" in gate.message


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("containerd://2.0.0", ("containerd", (2, 0))),
        ("containerd://v2.1.3-k3s1", ("containerd", (2, 1))),
        ("cri-o://1.30.4", ("cri-o", (1, 30))),
        ("v1.31.2", ("", (1, 31))),
        ("garbage", ("", None)),
        (None, ("", None)),
    ],
)
def test_parse_version(raw: str | None, parsed: tuple[str, tuple[int, int] | None]) -> None:
    assert parse_version(raw) == parsed


NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def published(readiness: Readiness, name: str = "node-a") -> ForensicNode:
    checks, conditions = to_status(readiness, [], now=NOW)
    node = ForensicNode(
        metadata={"name": name}, status=ForensicNodeStatus(checks=checks, conditions=conditions)
    )
    # Through the wire format and back, as the operator will read it.
    return ForensicNode.model_validate_json(node.model_dump_json(by_alias=True))


def test_status_round_trips_and_fails_fast_with_the_node_reason() -> None:
    node = published(evaluate(healthy(kubelet=GATE_OFF)))
    blocker = capture_blocker(node)
    assert blocker is not None
    assert blocker.reason == FailureReason.CHECKPOINTING_DISABLED
    assert "node node-a cannot capture" in blocker.message
    assert "ContainerCheckpoint" in blocker.remediation


def test_healthy_and_unknown_nodes_do_not_block() -> None:
    assert capture_blocker(published(evaluate(HEALTHY))) is None
    assert capture_blocker(published(evaluate(NodeProbe()))) is None


def test_missing_tcp_config_blocks_only_captures_that_need_it() -> None:
    node = published(evaluate(healthy(criu_config=CriuConfigObservation("Absent"))))
    assert capture_blocker(node) is None
    blocker = capture_blocker(node, container_has_tcp=True)
    assert blocker is not None
    assert blocker.reason == FailureReason.ESTABLISHED_TCP
    assert "tcp-established" in blocker.remediation


def test_ready_transition_time_moves_only_when_status_changes() -> None:
    _, first = to_status(evaluate(HEALTHY), [], now=NOW)
    later = NOW + timedelta(seconds=10)
    _, same = to_status(evaluate(HEALTHY), first, now=later)
    _, changed = to_status(evaluate(healthy(kubelet=GATE_OFF)), same, now=later)
    assert same[0].last_transition_time == NOW
    assert changed[0].last_transition_time == later
    assert changed[0].reason == FailureReason.CHECKPOINTING_DISABLED


def test_table_row_shows_ok_or_the_reason() -> None:
    node = published(
        evaluate(healthy(kubelet=GATE_OFF, criu_config=CriuConfigObservation("Absent")))
    )
    row = dict(zip(TABLE_COLUMNS, table_row(node, now=NOW), strict=True))
    assert row["NODE"] == "node-a"
    assert (row["READY"], row["REASON"]) == ("False", "CheckpointingDisabled")
    assert row["GATE"] == "CheckpointingDisabled"
    assert row["RUNTIME"] == "ok"
    assert row["CRIU"] == "EstablishedTCPNeedsConfig"
    assert row["CANARY"] == "-"
    assert row["HEARTBEAT"] == "never"
