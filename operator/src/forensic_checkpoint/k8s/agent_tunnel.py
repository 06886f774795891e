"""Reaching a node's agent through the API server, for a client outside the cluster network
(``kubectl forensic get-archive`` on a laptop): the agent pod on that node, a port-forward
(``pods/portforward``, websocket) to its HTTPS port, and the agents' CA certificate that the
chart publishes in a ConfigMap.

The tunnel carries bytes only: the caller runs TLS over it and verifies the agent's certificate
for the node's name (``cli/kubectl_forensic/agent_tls.py``), so the API server and the kubelet
relaying it see ciphertext, and a tunnel to the wrong pod fails the handshake.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any

from kubernetes.stream.ws_client import create_websocket, get_websocket_url
from websocket import ABNF, WebSocketConnectionClosedException, WebSocketException

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


#: Bytes from the agent held for the local reader before the relay stops reading the websocket:
#: a slow reader slows the agent down (TCP back-pressure) instead of filling memory.
_RELAY_BUFFER = 4 << 20
_DATA, _ERROR = 0, 1  # the port's two channels (v4.channel.k8s.io): data, then errors


class Tunnel:
    """One port-forward connection to ``pod``'s port: ``sock`` is the local end (one side of a
    socketpair), relayed to the websocket by one thread. Close it (or use ``with``) on every
    path: that ends the relay and the websocket.

    Why not the client library's ``PortForward``: it reads the websocket whether or not the
    reader keeps up, appending to one ``bytes`` object, so a download of hundreds of MiB slows
    to a crawl (each frame copies the whole backlog; measured: 2 MiB, then 17 KiB/s). This
    relay holds at most :data:`_RELAY_BUFFER` and copies each byte once."""

    def __init__(self, pod: AgentPod, websocket: Any) -> None:
        self.pod = pod
        self._ws = websocket
        self.sock, self._far = socket.socketpair()
        self._far.setblocking(False)
        self._error = ""
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._relay, name=f"port-forward {pod.name}:{pod.port}", daemon=True
        )
        self._thread.start()

    def error(self, wait: float = 1.0) -> str:
        """What the kubelet said on the port's error channel (e.g. nothing listens), waiting up
        to ``wait`` seconds for the relay to end after the data stream did."""
        self._thread.join(wait)
        return self._error.strip()

    def close(self) -> None:
        self._closing.set()
        self.sock.close()
        self._ws.abort()  # wakes the relay if it waits for the websocket
        self._thread.join(5)
        self._ws.shutdown()

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _relay(self) -> None:
        try:
            self._pump()
        except Exception as exc:  # any failure ends the stream, which the reader then sees
            if not self._closing.is_set() and not self._error:
                self._error = f"the port-forward broke: {exc}"
        finally:
            self._far.close()

    def _pump(self) -> None:
        """Until either side ends: websocket channel 0 -> local end (at most _RELAY_BUFFER
        waiting), local end -> websocket; channel 1 -> :meth:`error`."""
        ws, far = self._ws, self._far
        started = [False, False]  # each channel's first frame names the port
        pending = bytearray()
        remote_open = True
        while not self._closing.is_set() and (remote_open or pending):
            buffered_tls = isinstance(ws.sock, ssl.SSLSocket) and ws.sock.pending() > 0
            take = remote_open and len(pending) < _RELAY_BUFFER
            readers = [far] + ([ws.sock] if take and not buffered_tls else [])
            writers = [far] if pending else []
            wait = 0 if take and buffered_tls else 1
            ready, writable, _ = select.select(readers, writers, [], wait)
            if writable:
                with contextlib.suppress(BlockingIOError):
                    del pending[: far.send(pending)]
            if far in ready:
                data = far.recv(1 << 16)
                if not data:
                    return  # the local side is done
                ws.send(bytes((_DATA,)) + data, ABNF.OPCODE_BINARY)
            if take and (buffered_tls or ws.sock in ready):
                remote_open = self._receive(started, pending)

    def _receive(self, started: list[bool], pending: bytearray) -> bool:
        """One websocket frame: data to ``pending``, errors kept; False once the remote closed."""
        try:
            opcode, frame = self._ws.recv_data_frame(True)
        except WebSocketConnectionClosedException:
            return False
        if opcode == ABNF.OPCODE_CLOSE:
            return False
        if opcode == ABNF.OPCODE_BINARY and frame.data:
            channel, payload = frame.data[0], frame.data[1:]
            if channel > _ERROR:
                raise ValueError(f"unexpected channel {channel}")
            if not started[channel]:
                started[channel] = True
            elif channel == _DATA:
                pending += payload
            else:
                self._error += payload.decode(errors="replace")
        return True


def open_tunnel(api: ApiClient, pod: AgentPod) -> Tunnel:
    """A port-forward to ``pod`` (needs ``get`` and ``create`` on ``pods/portforward`` in its
    namespace: the upgrade is a GET, and Kubernetes 1.35+ also asks for ``create``)."""
    action = f"port-forward to pod {pod.namespace}/{pod.name}:{pod.port}"
    path = core_path("pods", namespace=pod.namespace, name=pod.name, subresource="portforward")
    _method, url, headers, _body, _post = api.param_serialize(
        method="GET",
        resource_path=path,
        query_params=[("ports", str(pod.port))],
        header_params={},
        auth_settings=["BearerToken"],
    )
    try:
        websocket = create_websocket(  # type: ignore[no-untyped-call]
            api.configuration,
            get_websocket_url(url),  # type: ignore[no-untyped-call]
            headers,
        )
    except WebSocketException as exc:
        status, message = _handshake_refusal(str(exc))
        raise ClusterError(f"{action}: {message}", status_code=status) from exc
    except OSError as exc:
        raise ClusterError(f"{action}: API server unreachable: {exc}") from exc
    try:
        return Tunnel(pod, websocket)
    except BaseException:
        websocket.shutdown()
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
