"""The operator's async HTTPS client for the node agents (contract: ``api/agent.py``).

It never downloads a report: a Completed capture's status carries the bounded summary the
agent built from it, so the operator needs nothing of the analyzer.

Async (aiohttp) because the kopf event loop runs every ForensicCheckpoint's daemon: one slow
agent must not hold up the others. The bearer token is re-read when its file changes, because
projected ServiceAccount tokens rotate.
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
from forensic_checkpoint.errors import AgentError, ConfigError

_M = TypeVar("_M", CaptureStatus, DeleteResult)

AGENT_UNAVAILABLE = "AgentUnavailable"
AGENT_UNAUTHORIZED = "AgentUnauthorized"
AGENT_FORBIDDEN = "AgentForbidden"
AGENT_BAD_RESPONSE = "AgentBadResponse"


class TokenFile:
    """A bearer token from a file, re-read when the file's mtime changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime: float | None = None
        self._token = ""

    def get(self) -> str:
        try:
            mtime = self._path.stat().st_mtime
            if mtime != self._mtime:
                self._token = self._path.read_text(encoding="utf-8").strip()
                self._mtime = mtime
        except OSError as exc:
            raise ConfigError(f"cannot read the agent token file {self._path}: {exc}") from exc
        return self._token


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
        token: TokenFile,
        tls: ssl.SSLContext,
        *,
        timeout: float = 15.0,
    ) -> None:
        self._session = session
        self._token = token
        self._tls = tls
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def submit(self, endpoint: str, request: CaptureRequest) -> CaptureStatus:
        """Ask for a capture; the agent answers with the (new or existing) job's status."""
        _, body = await self._call(
            "POST",
            endpoint,
            API_PREFIX,
            json_body=request.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
        return _parse(CaptureStatus.model_validate_json, body, endpoint, "CaptureStatus")

    async def status(self, endpoint: str, key: str) -> CaptureStatus | None:
        """The job's status, or ``None`` if the agent does not know the key."""
        status, body = await self._call("GET", endpoint, f"{API_PREFIX}/{key}", allow_404=True)
        return (
            None
            if status == 404
            else _parse(CaptureStatus.model_validate_json, body, endpoint, "CaptureStatus")
        )

    async def hold(self, endpoint: str, key: str, *, hold: bool) -> CaptureStatus | None:
        """Set or lift the legal hold of a job; ``None`` if the agent does not know the key."""
        status, body = await self._call(
            "PUT",
            endpoint,
            f"{API_PREFIX}/{key}/hold",
            json_body=HoldRequest(hold=hold).model_dump(mode="json", by_alias=True),
            allow_404=True,
        )
        return (
            None
            if status == 404
            else _parse(CaptureStatus.model_validate_json, body, endpoint, "CaptureStatus")
        )

    async def delete(self, endpoint: str, key: str) -> DeleteResult | None:
        """Delete the job's archive and report; ``None`` if there was nothing to delete."""
        status, body = await self._call("DELETE", endpoint, f"{API_PREFIX}/{key}", allow_404=True)
        return (
            None
            if status == 404
            else _parse(DeleteResult.model_validate_json, body, endpoint, "DeleteResult")
        )

    async def _call(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        json_body: Any = None,
        allow_404: bool = False,
    ) -> tuple[int, Any]:
        url = endpoint.rstrip("/") + path
        headers = {"Authorization": f"Bearer {self._token.get()}"}
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


def _parse(parse: Callable[[Any], _M], text: Any, endpoint: str, what: str) -> _M:
    try:
        return parse(text)
    except (ValidationError, ValueError) as exc:
        raise AgentError(
            f"agent {endpoint} sent an invalid {what}: {exc.__class__.__name__}",
            reason=AGENT_BAD_RESPONSE,
        ) from exc
