"""Finding the node agent from its ForensicNode (pure): an endpoint only counts while its
heartbeat is fresh, because an agent that stopped refreshing it may be gone with its port.

The agent to call is named by the node it must be the agent of, not by its endpoint alone: the
token sent is for that node's audience and the certificate checked is that node's, so an
endpoint that points elsewhere gets nothing it could use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from forensic_checkpoint.api.forensicnode import HEARTBEAT_STALE_SECONDS, ForensicNode

AGENT_UNAVAILABLE = "AgentUnavailable"
#: The endpoint's TLS peer is not the agent of the node (its certificate is for another name):
#: the endpoint was pointed elsewhere. Final at once; nothing is sent there.
AGENT_IDENTITY_MISMATCH = "AgentIdentityMismatch"
DEFAULT_HEARTBEAT_TIMEOUT = timedelta(seconds=HEARTBEAT_STALE_SECONDS)


@dataclass(frozen=True)
class AgentFacts:
    """``status.agent`` of a ForensicNode (``None`` fields when absent)."""

    node_name: str
    endpoint: str | None
    heartbeat_time: datetime | None
    #: What the agent waits for before it can serve (its first serving certificate).
    certificate_pending: str = ""


def agent_facts(node: ForensicNode) -> AgentFacts:
    name = str(node.metadata.get("name", ""))
    agent = node.status.agent if node.status is not None else None
    if agent is None:
        return AgentFacts(node_name=name, endpoint=None, heartbeat_time=None)
    return AgentFacts(
        node_name=name,
        endpoint=agent.endpoint,
        heartbeat_time=agent.heartbeat_time,
        certificate_pending=agent.certificate_pending,
    )


@dataclass(frozen=True)
class AgentTarget:
    """The agent of ``node_name``, listening at ``endpoint`` (``https://host:port``)."""

    node_name: str
    endpoint: str


@dataclass(frozen=True)
class AgentUnavailable:
    reason: str
    message: str


def usable_agent(
    facts: AgentFacts | None,
    *,
    node_name: str,
    now: datetime,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
) -> AgentTarget | AgentUnavailable:
    """The agent of ``node_name`` and its endpoint, or why there is none to use."""
    if facts is None:
        return AgentUnavailable(
            AGENT_UNAVAILABLE,
            f"no ForensicNode {node_name}: no forensic-checkpoint agent runs on that node",
        )
    if not facts.endpoint:
        return AgentUnavailable(
            AGENT_UNAVAILABLE, f"ForensicNode {node_name} publishes no agent endpoint"
        )
    if facts.heartbeat_time is None:
        return AgentUnavailable(
            AGENT_UNAVAILABLE, f"the agent on {node_name} has not sent a heartbeat"
        )
    age = now - facts.heartbeat_time
    if age > heartbeat_timeout:
        return AgentUnavailable(
            AGENT_UNAVAILABLE,
            f"the agent on {node_name} last sent a heartbeat {int(age.total_seconds())} s ago",
        )
    if facts.certificate_pending:
        return AgentUnavailable(
            AGENT_UNAVAILABLE,
            f"the agent on {node_name} has no serving certificate yet: {facts.certificate_pending}",
        )
    return AgentTarget(node_name, facts.endpoint)
