"""The agent's node: where its kubelet listens, and the ForensicNode it publishes.

The kubelet port is read from the Node object (``status.daemonEndpoints.kubeletEndpoint.Port``)
rather than assumed to be 10250, and the address from ``status.addresses`` (InternalIP first).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from forensic_checkpoint.agent.ports import ForensicNodeWriter, NodeReader
from forensic_checkpoint.api.forensicnode import (
    HEARTBEAT_INTERVAL_SECONDS,
    AgentStatus,
    ForensicNode,
)
from forensic_checkpoint.domain.readiness.liveness import marked_unknown
from forensic_checkpoint.errors import ClusterError, ConfigError

log = logging.getLogger(__name__)

_ADDRESS_PREFERENCE = ("InternalIP", "ExternalIP", "Hostname")
_LABELS = {"app.kubernetes.io/part-of": "forensic-checkpoint"}


def kubelet_endpoint(nodes: NodeReader, node_name: str) -> tuple[str, int]:
    """(address, port) of the node's kubelet, from its Node object."""
    node = nodes.get(node_name)
    if node is None:
        raise ConfigError(f"--node-name {node_name}: no such Node")
    port = node.kubelet_port
    if port is None or not 0 < port < 65536:
        raise ConfigError(f"Node {node_name} has no status.daemonEndpoints.kubeletEndpoint.Port")
    for kind in _ADDRESS_PREFERENCE:
        if node.addresses.get(kind):
            return node.addresses[kind], port
    raise ConfigError(f"Node {node_name} has no address in status.addresses")


def ensure_forensic_node(
    forensic_nodes: ForensicNodeWriter, node_name: str, *, owner_uid: str = ""
) -> None:
    """Create the node's ForensicNode unless it exists, owned by the Node ``owner_uid`` (so it
    goes when the Node goes)."""
    forensic_nodes.ensure(node_name, labels=_LABELS, owner_uid=owner_uid)


def publish(
    forensic_nodes: ForensicNodeWriter, node_name: str, agent: AgentStatus, *, owner_uid: str = ""
) -> ForensicNode:
    """Merge ``status.agent`` into the ForensicNode, creating it if needed (the readiness
    fields are written by :mod:`~forensic_checkpoint.agent.readiness.probe`)."""
    ensure_forensic_node(forensic_nodes, node_name, owner_uid=owner_uid)
    return forensic_nodes.set_agent(node_name, agent)


class Heartbeat:
    """Refreshes ``status.agent`` every ``interval`` seconds in a daemon thread.

    A failed refresh is logged and retried at the next beat: the operator notices a stale
    heartbeat by itself, and the agent keeps serving captures already accepted.
    """

    def __init__(
        self,
        forensic_nodes: ForensicNodeWriter,
        node_name: str,
        status: Callable[[], AgentStatus],
        *,
        interval: float = HEARTBEAT_INTERVAL_SECONDS,
        owner_uid: str = "",
        on_marked_unknown: Callable[[], None] | None = None,
    ) -> None:
        self.forensic_nodes = forensic_nodes
        self.node_name = node_name
        self.status = status
        self.interval = interval
        self.owner_uid = owner_uid
        #: Called when a beat finds Ready marked Unknown by the operator (the agent was gone
        #: or cut off): a readiness round sets it again from what the agent finds now.
        self.on_marked_unknown = on_marked_unknown
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self.last_error: str | None = None

    def beat(self) -> None:
        stored = publish(
            self.forensic_nodes, self.node_name, self.status(), owner_uid=self.owner_uid
        )
        if self.on_marked_unknown is not None and marked_unknown(stored):
            log.info("ForensicNode %s was marked Unknown; probing readiness now", self.node_name)
            self.on_marked_unknown()

    def start(self) -> None:
        self.beat()  # the first one synchronously: a misconfigured agent fails at start-up
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
                self.last_error = None
            except ClusterError as exc:
                self.last_error = exc.message
                log.warning("heartbeat for ForensicNode %s failed: %s", self.node_name, exc.message)


def now() -> datetime:
    return datetime.now(UTC)
