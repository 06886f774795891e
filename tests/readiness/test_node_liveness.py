"""The operator's side of a ForensicNode's Ready: Unknown once the agent's heartbeat is older
than the grace period (as the node lifecycle controller does for Nodes), written only where the
object has not changed since it was read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from forensic_checkpoint.api.conditions import Condition, ConditionStatus
from forensic_checkpoint.api.forensicnode import AgentStatus, ForensicNode, ForensicNodeStatus
from forensic_checkpoint.controller.liveness.monitor import NodeLiveness
from forensic_checkpoint.domain.conditions import find_condition, set_condition
from forensic_checkpoint.domain.readiness.liveness import (
    AGENT_NOT_HEARTBEATING,
    marked_unknown,
    stale_conditions,
)
from forensic_checkpoint.errors import ConflictError

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=40)


def _node(name: str, beat: datetime | None, *, rv: str = "7") -> ForensicNode:
    ready = set_condition(
        [],
        type_="Ready",
        status=ConditionStatus.TRUE,
        reason="Ready",
        message="",
        generation=None,
        now=T0 - timedelta(hours=1),
    )
    agent = AgentStatus(endpoint="https://10.0.0.1:8443", heartbeat_time=beat) if beat else None
    return ForensicNode(
        metadata={"name": name, "resourceVersion": rv, "creationTimestamp": "2026-12-01T10:00:00Z"},
        status=ForensicNodeStatus(agent=agent, conditions=ready),
    )


def test_a_fresh_heartbeat_changes_nothing() -> None:
    assert stale_conditions(_node("a", T0 - timedelta(seconds=39)), now=T0, grace=GRACE) is None


def test_a_stale_heartbeat_turns_ready_unknown_with_reason_and_message() -> None:
    conditions = stale_conditions(_node("a", T0 - timedelta(seconds=52)), now=T0, grace=GRACE)
    assert conditions is not None
    ready = find_condition(conditions, "Ready")
    assert ready is not None and ready.status == ConditionStatus.UNKNOWN
    assert ready.reason == AGENT_NOT_HEARTBEATING and ready.last_transition_time == T0
    assert "52 s ago (grace 40 s)" in ready.message
    marked = _node("a", T0 - timedelta(seconds=52))
    assert marked.status is not None
    marked.status.conditions = conditions
    assert marked_unknown(marked)
    assert stale_conditions(marked, now=T0 + timedelta(minutes=5), grace=GRACE) is None


def test_a_forensic_node_that_never_had_a_heartbeat_counts_from_its_creation() -> None:
    conditions = stale_conditions(_node("a", None), now=T0, grace=GRACE)
    ready = find_condition(conditions or [], "Ready")
    assert ready is not None and "no heartbeat at all" in ready.message


class _Repo:
    def __init__(self, nodes: list[ForensicNode], conflict: str = "") -> None:
        self.nodes = nodes
        self.conflict = conflict
        self.written: list[tuple[str, str]] = []

    def list(self) -> list[ForensicNode]:
        return self.nodes

    def set_conditions(
        self, name: str, conditions: Sequence[Condition], *, resource_version: str
    ) -> None:
        if name == self.conflict:
            raise ConflictError("the object has been modified")
        self.written.append((name, resource_version))


def test_the_monitor_marks_only_stale_nodes_and_yields_to_the_agent() -> None:
    repo = _Repo(
        [
            _node("fresh", T0 - timedelta(seconds=5)),
            _node("stale", T0 - timedelta(minutes=8), rv="11"),
            _node("racing", T0 - timedelta(minutes=8)),
        ],
        conflict="racing",
    )
    monitor = NodeLiveness(repo, grace=GRACE, clock=lambda: T0)
    assert monitor.check() == ["stale"]
    assert repo.written == [("stale", "11")]
    assert monitor.interval == 10.0
