"""Calling a node's agent from the plugin the way the operator does: the peer must present a
certificate from the agents' CA for that node's agent name
(:func:`~forensic_checkpoint.agent_identity.agent_server_name`), whatever host or tunnel the
bytes go through, so a ForensicNode, status or port-forward pointed at another node's agent
fails the handshake before the caller's token is sent.

TLS runs over a socket the caller has connected: a port-forward through the API server
(:mod:`forensic_checkpoint.k8s.agent_tunnel`, the default) or a TCP connection to the agent's
endpoint (``--direct``, inside the cluster network)."""

from __future__ import annotations

import http.client
import socket
import ssl
from pathlib import Path

from forensic_checkpoint.agent_identity import agent_server_name


def agent_tls_context(*, ca_file: Path | None = None, ca_pem: str | None = None) -> ssl.SSLContext:
    """Verifies the peer (chain and name) against ``ca_file`` or ``ca_pem``; the system store
    if neither is given."""
    context = ssl.create_default_context(
        cafile=str(ca_file) if ca_file else None, cadata=ca_pem or None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class AgentResponse:
    """An agent's answer; closing it (or ``with``) closes the TLS connection too."""

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self._connection = connection
        self._response = connection.getresponse()
        self.status = self._response.status

    def read(self, amt: int) -> bytes:
        return self._response.read(amt)

    def getheader(self, name: str) -> str | None:
        return self._response.getheader(name)

    def close(self) -> None:
        self._response.close()
        self._connection.close()

    def __enter__(self) -> AgentResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def agent_get(
    sock: socket.socket,
    node_name: str,
    context: ssl.SSLContext,
    path: str,
    token: str,
    *,
    timeout: float = 120.0,
) -> AgentResponse:
    """``GET path`` with ``token`` over ``sock``, after the TLS handshake has proven the peer to
    be ``node_name``'s agent (``ssl.SSLCertVerificationError`` otherwise, before any byte of the
    request is sent)."""
    server_name = agent_server_name(node_name)
    sock.settimeout(timeout)
    tls = context.wrap_socket(sock, server_hostname=server_name)
    connection = http.client.HTTPConnection(server_name, timeout=timeout)
    connection.sock = tls  # already connected: http.client does not dial
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        return AgentResponse(connection)
    except BaseException:
        connection.close()
        raise
