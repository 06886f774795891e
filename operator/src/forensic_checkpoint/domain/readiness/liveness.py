"""Is the node's agent still alive? The operator's side of a ForensicNode's ``Ready`` (pure).

The agent writes ``Ready`` from its readiness rounds, and a stopped agent writes nothing, so its
last verdict would stand for ever. As the node lifecycle controller does for a Node whose
kubelet stopped posting status (``NodeStatusUnknown`` after ``--node-monitor-grace-period``),
the operator turns ``Ready`` to Unknown once the heartbeat is older than a grace period. The
agent's next heartbeat sees the mark and runs a readiness round at once, which sets ``Ready``
again from what it finds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from forensic_checkpoint.api.conditions import READY, Condition, ConditionStatus
from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.domain.conditions import find_condition, set_condition

#: The Ready reason the operator sets; the agent reacts to this one only.
AGENT_NOT_HEARTBEATING = "AgentNotHeartbeating"
#: The node lifecycle controller's node-monitor-grace-period before Kubernetes 1.32.
DEFAULT_HEARTBEAT_GRACE = timedelta(seconds=40)


def stale_conditions(
    node: ForensicNode, *, now: datetime, grace: timedelta = DEFAULT_HEARTBEAT_GRACE
) -> list[Condition] | None:
    """The node's conditions with ``Ready`` Unknown when its agent's heartbeat (or, without one,
    the object's creation) is older than ``grace``; None when nothing is to change."""
    status = node.status
    conditions = list(status.conditions) if status is not None else []
    if marked_unknown(node):
        return None
    agent = status.agent if status is not None else None
    last = agent.heartbeat_time if agent is not None else _created(node)
    if last is None or now - last <= grace:
        return None
    age = int((now - last).total_seconds())
    what = f"last heartbeat {last.isoformat()}" if agent is not None else "no heartbeat at all"
    return set_condition(
        conditions,
        type_=READY,
        status=ConditionStatus.UNKNOWN,
        reason=AGENT_NOT_HEARTBEATING,
        message=(
            f"The agent stopped posting its heartbeat: {what}, {age} s ago (grace "
            f"{int(grace.total_seconds())} s). Check the agent pod on this node."
        ),
        generation=None,
        now=now,
    )


def marked_unknown(node: ForensicNode) -> bool:
    """Whether the operator marked ``Ready`` Unknown for a missing heartbeat."""
    ready = find_condition(node.status.conditions if node.status else [], READY)
    return (
        ready is not None
        and ready.status == ConditionStatus.UNKNOWN
        and ready.reason == AGENT_NOT_HEARTBEATING
    )


def _created(node: ForensicNode) -> datetime | None:
    raw = node.metadata.get("creationTimestamp")
    if not isinstance(raw, str):
        return None
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))
