"""Reaching a node's agent through the API server, for a client outside the cluster network
(``kubectl forensic get-archive`` on a laptop): the agent pod on that node, a port-forward
(``pods/portforward``, websocket) to its HTTPS port, and the agents' CA certificate that the
chart publishes in a ConfigMap.

The tunnel carries bytes only: the caller runs TLS over it and verifies the agent's certificate
for the node's name (``cli/kubectl_forensic/agent_tls.py``), so the API server and the kubelet
relaying it see ciphertext, and a tunnel to the wrong pod fails the handshake.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward

from forensic_checkpoint.errors import ClusterError, NotFoundError
from forensic_checkpoint.k8s._rest import core_path, request_json
from forensic_checkpoint.k8s.client import ApiClient

#: Labels every chart release puts on its agent pods (``fc.agentSelector``, ``fc.labels``).
AGENT_SELECTOR = "app.kubernetes.io/component=agent,app.kubernetes.io/part-of=forensic-checkpoint"
#: The agent container's port name in the DaemonSet.
AGENT_PORT_NAME = "https"


@dataclass(frozen=True)
class AgentPod:
    namespace: str
    name: str
    port: int


def agent_pod(api: ApiClient, namespace: str, node_name: str) -> AgentPod:
    """The running agent pod on ``node_name`` (needs ``list pods`` in ``namespace``)."""
    listing = request_json(
        api,
        "GET",
        core_path("pods", namespace=namespace),
        query={"labelSelector": AGENT_SELECTOR, "fieldSelector": f"spec.nodeName={node_name}"},
    )
    for pod in (listing or {}).get("items") or []:
        if (pod.get("status") or {}).get("phase") != "Running" or _deleting(pod):
            continue
        port = _https_port(pod)
        if port:
            return AgentPod(namespace, str(pod["metadata"]["name"]), port)
    raise NotFoundError(
        f"no running agent pod on node {node_name} in namespace {namespace} "
        f"(labels {AGENT_SELECTOR})"
    )


def _deleting(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _https_port(pod: dict[str, Any]) -> int:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == AGENT_PORT_NAME:
                return int(port.get("containerPort") or 0)
    return 0


class Tunnel:
    """One port-forward connection to ``pod``'s port: ``sock`` is the local end (a connected
    socket, one side of a socketpair the client library relays over the websocket). Close it
    (or use ``with``) on every path: that ends the relay thread and the websocket."""

    def __init__(self, pod: AgentPod, forward: Any) -> None:
        self.pod = pod
        self._forward = forward
        # A real socket object (ssl needs one), not the library's wrapper around it.
        self.sock = socket.socket(fileno=forward.socket(pod.port).detach())

    def error(self, wait: float = 1.0) -> str:
        """What the kubelet said on the port's error channel (e.g. nothing listens), waiting up
        to ``wait`` seconds for it to arrive after the data stream ended."""
        deadline = time.monotonic() + wait
        while True:
            message = self._forward.error(self.pod.port)
            if message or time.monotonic() >= deadline or not self._forward.connected:
                return str(message or "").strip()
            time.sleep(0.05)

    def close(self) -> None:
        self.sock.close()
        self._forward.close()

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tunnel(api: ApiClient, pod: AgentPod) -> Tunnel:
    """A port-forward to ``pod`` (needs ``create pods/portforward`` in its namespace)."""
    core = k8s_client.CoreV1Api(api)
    action = f"port-forward to pod {pod.namespace}/{pod.name}:{pod.port}"
    try:
        forward = portforward(
            core.connect_get_namespaced_pod_portforward,
            pod.name,
            pod.namespace,
            ports=str(pod.port),
        )
    except ApiException as exc:
        status, message = _handshake_refusal(str(exc.reason or exc))
        raise ClusterError(f"{action}: {message}", status_code=status or exc.status) from exc
    try:
        return Tunnel(pod, forward)
    except BaseException:
        forward.close()
        raise


def _handshake_refusal(text: str) -> tuple[int | None, str]:
    """(HTTP status, the API server's message) of a refused websocket handshake, which the
    client library reports as ``Handshake status 403 Forbidden -+-+- {headers} -+-+- {body}``."""
    parts = text.split(" -+-+- ")
    found = re.match(r"Handshake status (\d{3})", parts[0])
    message = parts[0]
    if len(parts) >= 3:
        try:
            body = json.loads(parts[2])
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            message = f"{parts[0]}: {body['message']}"
    return (int(found[1]) if found else None), message


def config_map_value(api: ApiClient, namespace: str, name: str, key: str) -> str | None:
    """``data[key]`` of a ConfigMap, ``None`` when the ConfigMap or the key is missing."""
    try:
        found = request_json(api, "GET", core_path("configmaps", namespace=namespace, name=name))
    except NotFoundError:
        return None
    value = ((found or {}).get("data") or {}).get(key)
    return str(value) if value else None
