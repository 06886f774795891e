"""What the checks add up to: the node's ``Ready`` condition, the ForensicNode status the agent
writes, and the operator's fail-fast (:func:`capture_blocker`), which reads that status back to
fail a capture at once, with the node's reason, instead of waiting for the kubelet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from forensic_checkpoint.api.conditions import READY, Condition, ConditionStatus
from forensic_checkpoint.api.forensicnode import CheckStatus, ForensicNode, ReadinessCheck
from forensic_checkpoint.domain.conditions import find_condition, set_condition
from forensic_checkpoint.domain.failures.model import FailureReason
from forensic_checkpoint.domain.readiness.checks import (
    BLOCKING,
    READY_REASON,
    READY_WITH_WARNINGS,
    Check,
    CheckName,
    run_checks,
)
from forensic_checkpoint.domain.readiness.probe import NodeProbe


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: tuple[Check, ...]
    status: ConditionStatus
    reason: str
    message: str
    warnings: tuple[Check, ...] = field(default=())


def evaluate(probe: NodeProbe) -> Readiness:
    """Checks in blame order, and the Ready condition they add up to."""
    checks = tuple(run_checks(probe))
    warnings = tuple(c for c in checks if not c.blocking and c.status is CheckStatus.FAILED)
    status, reason, message = _ready_condition(checks, warnings)
    return Readiness(checks, status, reason, message, warnings)


def _ready_condition(
    checks: Sequence[Check], warnings: Sequence[Check]
) -> tuple[ConditionStatus, str, str]:
    """A failed blocking check makes the node not ready, an unknown one leaves it unknown, and a
    failed non-blocking check only adds a warning."""
    blocking = [c for c in checks if c.blocking]
    failed = next((c for c in blocking if c.status is CheckStatus.FAILED), None)
    if failed is not None:
        return ConditionStatus.FALSE, failed.reason, failed.message
    unknown = [c for c in blocking if c.status is CheckStatus.UNKNOWN]
    if unknown:
        names = ", ".join(c.name for c in unknown)
        first = unknown[0]
        return ConditionStatus.UNKNOWN, first.reason, f"not yet known: {names}. {first.message}"
    if warnings:
        text = "; ".join(f"{c.reason}: {c.message}" for c in warnings)
        return (
            ConditionStatus.TRUE,
            READY_WITH_WARNINGS,
            f"captures work, but some will fail: {text}",
        )
    return ConditionStatus.TRUE, READY_REASON, "captures work"


def to_status(
    readiness: Readiness, conditions: list[Condition], *, now: datetime
) -> tuple[list[ReadinessCheck], list[Condition]]:
    """``status.checks`` and ``status.conditions`` (with Ready set) for the ForensicNode."""
    checks = [
        ReadinessCheck(
            name=c.name.value,
            status=c.status,
            reason=str(c.reason),
            message=c.message[:1024],
            remediation=c.remediation[:1024],
            last_probe_time=now,
        )
        for c in readiness.checks
    ]
    updated = set_condition(
        conditions,
        type_=READY,
        status=readiness.status,
        reason=readiness.reason,
        message=readiness.message,
        generation=None,
        now=now,
    )
    return checks, updated


@dataclass(frozen=True, slots=True)
class NodeNotReady:
    """Why a capture on this node would fail, as the ForensicCheckpoint's condition says it."""

    reason: str
    message: str
    remediation: str


def capture_blocker(node: ForensicNode, *, container_has_tcp: bool = False) -> NodeNotReady | None:
    """The reason to fail a capture on ``node`` at once, or ``None`` to go ahead.

    Only a *failed* blocking check stops a capture: ``Unknown`` (a new agent, a probe timeout)
    lets it run, and the kubelet's own answer decides. ``container_has_tcp`` lets the operator
    also stop early on a missing ``tcp-established`` when it knows the target holds connections.
    """
    status = node.status
    if status is None:
        return None
    name = str(node.metadata.get("name", ""))
    check = _stopping_check(status.checks, container_has_tcp=container_has_tcp)
    if check is not None and check.reason:  # a stopping check always has a reason
        return NodeNotReady(
            check.reason, f"node {name} cannot capture: {check.message}", check.remediation
        )
    ready = find_condition(status.conditions, READY)
    if ready is not None and ready.status is ConditionStatus.FALSE and not status.checks:
        return NodeNotReady(ready.reason, f"node {name} is not ready: {ready.message}", "")
    return None


def _stopping_check(
    checks: Sequence[ReadinessCheck], *, container_has_tcp: bool
) -> ReadinessCheck | None:
    """The first failed check, in blame order, that stops a capture; the CRIU configuration
    only for a container with connections, and only for a missing ``tcp-established``."""
    stopping = BLOCKING | ({CheckName.CRIU_CONFIG} if container_has_tcp else set())
    for check_name in CheckName:
        if check_name not in stopping:
            continue
        check = next((c for c in checks if c.name == check_name.value), None)
        if check is None or check.status is not CheckStatus.FAILED or not check.reason:
            continue
        if check_name is CheckName.CRIU_CONFIG and check.reason != FailureReason.ESTABLISHED_TCP:
            continue
        return check
    return None
