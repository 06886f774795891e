"""The agent's node: where its kubelet listens, and the ForensicNode it publishes.

The kubelet port is read from the Node object (``status.daemonEndpoints.kubeletEndpoint.Port``)
rather than assumed to be 10250, and the address from ``status.addresses`` (InternalIP first).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from forensic_checkpoint.api.base import API_VERSION, GROUP, VERSION
from forensic_checkpoint.api.forensicnode import (
    HEARTBEAT_INTERVAL_SECONDS,
    AgentStatus,
    ForensicNode,
)
from forensic_checkpoint.errors import ClusterError, ConfigError, NotFoundError
from forensic_checkpoint.k8s.client import ApiClient, request_json

log = logging.getLogger(__name__)

_ADDRESS_PREFERENCE = ("InternalIP", "ExternalIP", "Hostname")
_PLURAL = ForensicNode.crd.plural


def kubelet_endpoint(api: ApiClient, node_name: str) -> tuple[str, int]:
    """(address, port) of the node's kubelet, from its Node object."""
    try:
        node = request_json(api, "GET", f"/api/v1/nodes/{quote(node_name, safe='')}")
    except NotFoundError as exc:
        raise ConfigError(f"--node-name {node_name}: no such Node") from exc
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"Node {node_name} has no status.daemonEndpoints.kubeletEndpoint.Port")
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    for kind in _ADDRESS_PREFERENCE:
        if addresses.get(kind):
            return str(addresses[kind]), port
    raise ConfigError(f"Node {node_name} has no address in status.addresses")


def _path(name: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/{_PLURAL}"
    return f"{base}/{quote(name, safe='')}" if name else base


def node_info(api: ApiClient, node_name: str) -> dict[str, Any]:
    """``status.nodeInfo`` of the Node (runtime and kubelet versions)."""
    node = request_json(api, "GET", f"/api/v1/nodes/{quote(node_name, safe='')}")
    return dict((node.get("status") or {}).get("nodeInfo") or {})


def get_forensic_node(api: ApiClient, node_name: str) -> dict[str, Any] | None:
    try:
        return dict(request_json(api, "GET", _path(node_name)))
    except NotFoundError:
        return None


def patch_forensic_node_status(api: ApiClient, node_name: str, status: dict[str, Any]) -> None:
    """JSON merge of ``status``: the keys given are replaced, the others left as they are."""
    request_json(
        api,
        "PATCH",
        _path(node_name) + "/status",
        body={"status": status},
        content_type="application/merge-patch+json",
    )


def ensure_forensic_node(api: ApiClient, node_name: str) -> None:
    """Create the node's ForensicNode unless it exists."""
    if get_forensic_node(api, node_name) is None:
        body = {
            "apiVersion": API_VERSION,
            "kind": "ForensicNode",
            "metadata": {
                "name": node_name,
                "labels": {"app.kubernetes.io/part-of": "forensic-checkpoint"},
            },
        }
        try:
            request_json(api, "POST", _path(), body=body)
        except ClusterError as exc:
            if exc.status_code != 409:  # another agent instance won the race: fine
                raise


def publish(api: ApiClient, node_name: str, agent: AgentStatus) -> None:
    """Merge ``status.agent`` into the ForensicNode, creating it if needed (the readiness
    fields are written by :mod:`~forensic_checkpoint.agent.readiness.probe`)."""
    ensure_forensic_node(api, node_name)
    patch_forensic_node_status(api, node_name, {"agent": agent.to_kube()})


class Heartbeat:
    """Refreshes ``status.agent`` every ``interval`` seconds in a daemon thread.

    A failed refresh is logged and retried at the next beat: the operator notices a stale
    heartbeat by itself, and the agent keeps serving captures already accepted.
    """

    def __init__(
        self,
        api: ApiClient,
        node_name: str,
        status: Callable[[], AgentStatus],
        *,
        interval: float = HEARTBEAT_INTERVAL_SECONDS,
    ) -> None:
        self.api = api
        self.node_name = node_name
        self.status = status
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self.last_error: str | None = None

    def beat(self) -> None:
        publish(self.api, self.node_name, self.status())

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
