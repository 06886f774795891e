"""The operator's async HTTPS client for the node agents (contract: ``api/agent.py``).

It never downloads a report: a Completed capture's status carries the bounded summary the
agent built from it, so the operator needs nothing of the analyzer.

Async (aiohttp) because the kopf event loop runs every ForensicCheckpoint's daemon: one slow
agent must not hold up the others. Each call carries a token for the audience of the node whose
agent is called (:mod:`.agent_tokens`), never the operator's API-server token.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from pydantic import ValidationError

from forensic_checkpoint.api.agent import (
    API_PREFIX,
    CaptureRequest,
    CaptureStatus,
    DeleteResult,
    HoldRequest,
)
from forensic_checkpoint.controller.capture.agent_tokens import AgentTokens
from forensic_checkpoint.domain.capture.agents import AgentTarget
from forensic_checkpoint.errors import AgentError, ClusterError, ConfigError

_M = TypeVar("_M", CaptureStatus, DeleteResult)

AGENT_UNAVAILABLE = "AgentUnavailable"
AGENT_UNAUTHORIZED = "AgentUnauthorized"
AGENT_FORBIDDEN = "AgentForbidden"
AGENT_BAD_RESPONSE = "AgentBadResponse"


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify the agent's certificate against ``ca_file`` (the system store if ``None``)."""
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

    async def status(self, agent: AgentTarget, key: str) -> CaptureStatus | None:
        """The job's status, or ``None`` if the agent does not know the key."""
        status, body = await self._call("GET", agent, f"{API_PREFIX}/{key}", allow_404=True)
        return (
            None
            if status == 404
            else _parse(CaptureStatus.model_validate_json, body, agent, "CaptureStatus")
        )

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
    ) -> tuple[int, Any]:
        endpoint = agent.endpoint
        url = endpoint.rstrip("/") + path
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
                method, url, json=json_body, headers=headers, ssl=self._tls, timeout=self._timeout
            ) as response:
                text = await response.text()
                status = response.status
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


def _parse(parse: Callable[[Any], _M], text: Any, agent: AgentTarget, what: str) -> _M:
    try:
        return parse(text)
    except (ValidationError, ValueError) as exc:
        raise AgentError(
            f"agent {agent.endpoint} sent an invalid {what}: {exc.__class__.__name__}",
            reason=AGENT_BAD_RESPONSE,
        ) from exc
