"""The agent's HTTPS API under a full disk and idle clients (issue 15, item 11): a job that
cannot be recorded is a clear 507 and a log line, not a dropped connection; idle connections
are closed after the idle timeout, and no more than ``max_connections`` are served at once."""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from tests.agent.agent_support import DirKubelet, Pki, hashing_analyzer, request
from tests.factories import capture_service, serve_in_thread

from forensic_checkpoint.agent import jobs
from forensic_checkpoint.agent.http.auth import Authenticator
from forensic_checkpoint.agent.http.server import AgentServer, tls_context

OPERATOR = "system:serviceaccount:forensic-checkpoint:operator"
TOKEN = "op-token"
IDLE = 0.5


@pytest.fixture
def server(tmp_path: Path, pki: Pki, sample_tar: Path) -> Iterator[AgentServer]:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    service = capture_service(
        tmp_path / "state", DirKubelet(checkpoints, sample_tar), checkpoints, hashing_analyzer
    )
    agent = AgentServer(
        ("127.0.0.1", 0),
        service=service,
        authenticator=Authenticator(lambda token: (token == TOKEN, OPERATOR), OPERATOR),
        tls=tls_context(pki.server_cert, pki.server_key),
        idle_timeout=IDLE,
        max_connections=2,
    )
    serve_in_thread(agent)
    yield agent
    agent.shutdown()
    agent.server_close()
    service.shutdown(wait=True)


def _session(pki: Pki) -> requests.Session:
    session = requests.Session()
    session.verify = str(pki.ca)
    session.trust_env = False
    return session


def _tls_connection(server: AgentServer, pki: Pki) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(pki.ca))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _submit(server: AgentServer, pki: Pki, key: str) -> requests.Response:
    return _session(pki).post(
        f"https://127.0.0.1:{server.port}/v1/captures",
        data=request(key).to_json(),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


def test_a_full_jobs_directory_is_a_507_and_a_log_line(
    server: AgentServer, pki: Pki, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before the fix the OSError escaped the handler: the connection was dropped (the operator
    saw a ConnectionError) and only a debug line was logged."""

    def full(path: Path, data: bytes, mode: int = 0o600) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(jobs, "_atomic_write", full)
    with caplog.at_level(logging.INFO, logger="forensic_checkpoint.agent.http.server"):
        answer = _submit(server, pki, "full-app")
    assert answer.status_code == 507
    assert answer.json()["reason"] == "AgentStorageFull"
    assert "No space left on device" in answer.json()["message"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("cannot write agent state" in r.getMessage() for r in errors)
    monkeypatch.undo()  # space is back: the same request is taken
    again = _submit(server, pki, "full-app")
    assert again.status_code == 202


def test_an_idle_client_is_disconnected_after_the_idle_timeout(
    server: AgentServer, pki: Pki
) -> None:
    """Before the fix an idle connection held a thread for 60 s (this test's 10 s wait ran out)."""
    for handshake in (True, False):
        if handshake:
            conn: socket.socket = _tls_connection(server, pki)
        else:  # not even a TLS ClientHello
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        started = time.monotonic()
        with conn:
            try:
                data = conn.recv(1)
            except (ssl.SSLError, ConnectionResetError):
                data = b""
        waited = time.monotonic() - started
        assert data == b""
        assert IDLE * 0.5 < waited < IDLE + 3, waited


def test_connections_beyond_the_limit_are_closed_at_once(server: AgentServer, pki: Pki) -> None:
    """Two idle clients hold both slots: a third connection is closed without a thread; once the
    idle ones are gone, requests are served again."""
    holders = [_tls_connection(server, pki) for _ in range(2)]
    try:
        time.sleep(0.05)
        started = time.monotonic()
        with (
            pytest.raises((ssl.SSLError, ConnectionError, OSError)),
            _tls_connection(server, pki) as third,
        ):
            if third.recv(1) == b"":
                raise ConnectionResetError("closed by the agent")
        assert time.monotonic() - started < IDLE
    finally:
        for conn in holders:
            conn.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            health = _session(pki).get(f"https://127.0.0.1:{server.port}/healthz", timeout=5)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert health.status_code == 200
