"""The operator's async HTTPS client for the node agents (contract: ``api/agent.py``).

It never downloads a report: a Completed capture's status carries the bounded summary the
agent built from it, so the operator needs nothing of the analyzer.

Async (aiohttp) because the kopf event loop runs every ForensicCheckpoint's daemon: one slow
agent must not hold up the others.

Each call names the node whose agent it is for (:class:`AgentTarget`), and
- the TLS handshake verifies the peer as that node's agent: its certificate must be valid for
  ``agent_server_name(node)`` (SNI and hostname check), whatever host the endpoint names. An
  endpoint pointed at another node's agent, or at anything else, fails the handshake
  (``AgentIdentityMismatch``) before the token is sent. aiohttp (>= 3.14.1) keys pooled
  connections by that server name too, so a connection verified for one node is never reused
  for another;
- the token is the operator's for that node's agent audience (:mod:`.agent_tokens`), never its
  API-server token, so even a peer that passed the handshake can use it nowhere else.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
from pydantic import ValidationError

from forensic_checkpoint.agent_identity import agent_server_name
from forensic_checkpoint.api.agent import (
    API_PREFIX,
    CaptureDigests,
    CaptureRequest,
    CaptureState,
    CaptureStatus,
    DeleteResult,
    HoldRequest,
)
from forensic_checkpoint.controller.capture.agent_tokens import AgentTokens
from forensic_checkpoint.domain.capture.agents import AGENT_IDENTITY_MISMATCH, AgentTarget
from forensic_checkpoint.errors import AgentError, ClusterError, ConfigError

_M = TypeVar("_M", CaptureStatus, DeleteResult, CaptureDigests)

AGENT_UNAVAILABLE = "AgentUnavailable"
AGENT_UNAUTHORIZED = "AgentUnauthorized"
AGENT_FORBIDDEN = "AgentForbidden"
AGENT_BAD_RESPONSE = "AgentBadResponse"
#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH: the certificate is for another name.
_HOSTNAME_MISMATCH = 62


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify the agent's certificate against ``ca_file`` (the system store if ``None``); the
    name checked is given per request (``server_hostname``)."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the agent CA file {ca_file}: {exc}") from exc


class AgentClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: AgentTokens,
        tls: ssl.SSLContext,
        *,
        timeout: float = 15.0,
    ) -> None:
        self._session = session
        self._tokens = tokens
        self._tls = tls
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def submit(self, agent: AgentTarget, request: CaptureRequest) -> CaptureStatus:
        """Ask for a capture; the agent answers with the (new or existing) job's status."""
        _, body = await self._call(
            "POST",
            agent,
            API_PREFIX,
            json_body=request.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
        return _parse(CaptureStatus.model_validate_json, body, agent, "CaptureStatus")

    async def status(
        self,
        agent: AgentTarget,
        key: str,
        *,
        wait_while: Collection[CaptureState] = (),
        wait_seconds: float = 0.0,
    ) -> CaptureStatus | None:
        """The job's status, or ``None`` if the agent does not know the key. With
        ``wait_while`` the agent answers once the job left those states (at most
        ``wait_seconds``): the operator learns that a kubelet call ended when it ends."""
        path = f"{API_PREFIX}/{key}"
        extra = 0.0
        if wait_while and wait_seconds > 0:
            states = ",".join(sorted(state.value for state in wait_while))
            path += f"?{urlencode({'waitWhile': states, 'timeoutSeconds': wait_seconds})}"
            extra = wait_seconds
        status, body = await self._call("GET", agent, path, allow_404=True, extra_time=extra)
        return (
            None
            if status == 404
            else _parse(CaptureStatus.model_validate_json, body, agent, "CaptureStatus")
        )

    async def digests(self, agent: AgentTarget) -> CaptureDigests | None:
        """Every job the agent keeps, one line each (one call follows a node's kept archives);
        ``None`` from an agent older than ``GET /v1/captures`` (405). A list that names another
        node is refused, like a certificate for another node."""
        try:
            _, body = await self._call("GET", agent, API_PREFIX)
        except AgentError as exc:
            if exc.status_code == 405:
                return None
            raise
        digests = _parse(CaptureDigests.model_validate_json, body, agent, "CaptureDigests")
        if digests.node_name != agent.node_name:
            raise AgentError(
                f"agent {agent.endpoint} listed the jobs of node {digests.node_name!r}, not of "
                f"{agent.node_name}",
                reason=AGENT_IDENTITY_MISMATCH,
            )
        return digests

    async def hold(self, agent: AgentTarget, key: str, *, hold: bool) -> CaptureStatus | None:
        """Set or lift the legal hold of a job; ``None`` if the agent does not know the key."""
        status, body = await self._call(
            "PUT",
            agent,
            f"{API_PREFIX}/{key}/hold",
            json_body=HoldRequest(hold=hold).model_dump(mode="json", by_alias=True),
            allow_404=True,
        )
        return (
            None
            if status == 404
            else _parse(CaptureStatus.model_validate_json, body, agent, "CaptureStatus")
        )

    async def delete(self, agent: AgentTarget, key: str) -> DeleteResult | None:
        """Delete the job's archive and report; ``None`` if there was nothing to delete."""
        status, body = await self._call("DELETE", agent, f"{API_PREFIX}/{key}", allow_404=True)
        return (
            None
            if status == 404
            else _parse(DeleteResult.model_validate_json, body, agent, "DeleteResult")
        )

    async def _call(
        self,
        method: str,
        agent: AgentTarget,
        path: str,
        *,
        json_body: Any = None,
        allow_404: bool = False,
        extra_time: float = 0.0,
    ) -> tuple[int, Any]:
        endpoint, node = agent.endpoint, agent.node_name
        url = endpoint.rstrip("/") + path
        try:
            server_name = agent_server_name(node)
        except ValueError as exc:
            raise AgentError(str(exc), reason=AGENT_IDENTITY_MISMATCH) from exc
        try:
            token = await self._tokens.get(agent.node_name)
        except ClusterError as exc:
            raise AgentError(
                f"no token for the agent of {agent.node_name}: {exc.message}",
                reason=AGENT_UNAUTHORIZED,
            ) from exc
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self._session.request(
                method,
                url,
                json=json_body,
                headers=headers,
                ssl=self._tls,
                server_hostname=server_name,
                timeout=aiohttp.ClientTimeout(total=(self._timeout.total or 0) + extra_time)
                if extra_time
                else self._timeout,
            ) as response:
                text = await response.text()
                status = response.status
        except aiohttp.ClientConnectorCertificateError as exc:
            raise _not_verified(endpoint, node, server_name, exc) from exc
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
            raise AgentError(
                f"agent {endpoint} unreachable: {type(exc).__name__}: {exc}",
                reason=AGENT_UNAVAILABLE,
            ) from exc
        if status == 404 and allow_404:
            return status, None
        if status == 401:
            self._tokens.forget(agent.node_name)
            raise AgentError(
                f"agent {endpoint} rejected the operator's token (401)",
                reason=AGENT_UNAUTHORIZED,
                status_code=status,
            )
        if status == 403:
            raise AgentError(
                f"agent {endpoint} refused the operator's identity (403): {text[:200]}",
                reason=AGENT_FORBIDDEN,
                status_code=status,
            )
        if not 200 <= status <= 299:
            raise AgentError(
                f"agent {endpoint} answered {status} to {method} {path}: {text[:300]}",
                reason=AGENT_BAD_RESPONSE if status < 500 else AGENT_UNAVAILABLE,
                status_code=status,
            )
        return status, text


def _not_verified(
    endpoint: str, node: str, server_name: str, exc: aiohttp.ClientConnectorCertificateError
) -> AgentError:
    """A certificate that does not verify: another node's agent (or anyone else) is at the
    endpoint, or the node's agent has no valid certificate from the agents' CA."""
    error = exc.certificate_error
    detail = getattr(error, "verify_message", "") or str(error)
    if getattr(error, "verify_code", None) == _HOSTNAME_MISMATCH:
        return AgentError(
            f"the server at {endpoint} is not the agent of node {node}: its certificate is "
            f"not valid for {server_name} ({detail}); nothing was sent to it",
            reason=AGENT_IDENTITY_MISMATCH,
        )
    return AgentError(
        f"agent {endpoint} of node {node} presented no valid certificate from the agents' CA "
        f"for {server_name} ({detail}); nothing was sent to it",
        reason=AGENT_UNAVAILABLE,
    )


def _parse(parse: Callable[[Any], _M], text: Any, agent: AgentTarget, what: str) -> _M:
    try:
        return parse(text)
    except (ValidationError, ValueError) as exc:
        raise AgentError(
            f"agent {agent.endpoint} sent an invalid {what}: {exc.__class__.__name__}",
            reason=AGENT_BAD_RESPONSE,
        ) from exc
