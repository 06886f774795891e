"""Calling a node's agent from the plugin (``requests``) the way the operator does: the peer must
present a certificate from the agents' CA for that node's agent name
(:func:`~forensic_checkpoint.agent_identity.agent_server_name`), whatever host the endpoint
names, so a ForensicNode or status pointed at another node's agent fails the handshake before
the caller's token is sent."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from forensic_checkpoint.agent_identity import agent_server_name


class AgentIdentityAdapter(HTTPAdapter):
    """Sends SNI and checks the certificate for the agent name of ``node_name``, against
    ``ca_file`` (the system store if None) whatever the request or the environment
    (``REQUESTS_CA_BUNDLE``) says."""

    def __init__(self, node_name: str, ca_file: Path | None, **kwargs: Any) -> None:
        self.server_name = agent_server_name(node_name)
        self.verify: str | bool = str(ca_file) if ca_file else True
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **pool_kwargs: Any) -> None:
        pool_kwargs["server_hostname"] = self.server_name
        pool_kwargs["assert_hostname"] = self.server_name
        super().init_poolmanager(*args, **pool_kwargs)

    def send(  # noqa: PLR0917 - requests' own signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(request, stream, timeout, self.verify, cert, proxies)


def agent_session(node_name: str, ca_file: Path | None) -> requests.Session:
    """A session for ``node_name``'s agent (its endpoint is always ``https://``)."""
    session = requests.Session()
    session.mount("https://", AgentIdentityAdapter(node_name, ca_file))
    return session
