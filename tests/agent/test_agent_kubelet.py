"""The kubelet client against a local HTTPS server that demands a client certificate.

The full kubelet behaviour (TokenReview, SubjectAccessReview, real archives) is exercised
against the dev cluster's fake kubelets in test_agent_cluster.py; here each transport failure
is produced for real: a wrong CA, a refused port, a server that never answers.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from tests.agent.agent_support import Pki
from tests.factories import serve_in_thread

from forensic_checkpoint.agent.kubelet.client import (
    KubeletAuth,
    KubeletCallAbandoned,
    KubeletClient,
)
from forensic_checkpoint.errors import ConfigError, KubeletError


class _Kubelet(ThreadingHTTPServer):
    daemon_threads = True
    answer: tuple[int, str] = (200, '{"items":["/x/checkpoint-p_ns-c-2026-01-01T00:00:00Z.tar"]}')
    hang = threading.Event()
    delay = 0.0  # seconds before the answer, like a runtime dumping memory
    seen: list[tuple[str, str | None]]

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: the transport tests break handshakes and connections on purpose."""


class _Handler(BaseHTTPRequestHandler):
    server: _Kubelet

    def do_POST(self) -> None:
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        subject: dict[str, Any] = dict(x[0] for x in peer["subject"]) if peer else {}  # type: ignore[misc]
        self.server.seen.append((self.path, subject.get("commonName")))
        if self.server.hang.is_set():
            threading.Event().wait(5)  # longer than the client waits
        threading.Event().wait(self.server.delay)
        status, body = self.server.answer
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kubelet(pki: Pki) -> Iterator[_Kubelet]:
    server = _Kubelet(("127.0.0.1", 0), _Handler)
    server.seen = []
    server.hang = threading.Event()
    server.delay = 0.0
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(pki.ca)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    serve_in_thread(server)
    yield server
    server.hang.clear()
    server.shutdown()
    server.server_close()


def _client(
    pki: Pki,
    port: int,
    *,
    ca: Path | None = None,
    margin: float = 30.0,
    runtime_request_timeout: float = 120.0,
) -> KubeletClient:
    auth = KubeletAuth(client_cert=pki.client_cert, client_key=pki.client_key, ca_file=ca or pki.ca)
    return KubeletClient(
        "node-1",
        "127.0.0.1",
        port,
        auth,
        timeout_margin=margin,
        runtime_request_timeout=runtime_request_timeout,
    )


def test_checkpoint_uses_the_client_certificate_and_timeout(pki: Pki, kubelet: _Kubelet) -> None:
    path = _client(pki, kubelet.server_port).checkpoint("ns", "p", "c", 42)
    assert path == "/x/checkpoint-p_ns-c-2026-01-01T00:00:00Z.tar"
    assert kubelet.seen == [("/checkpoint/ns/p/c?timeout=42", "forensic-checkpoint-agent")]


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, "Unauthorized", "KubeletUnauthorized"),
        (404, "404 page not found", "CheckpointingDisabled"),
        (404, "container c does not exist", "ContainerNotFound"),
        (200, '{"items":[]}', "KubeletBadResponse"),
        (200, "not json", "KubeletBadResponse"),
    ],
)
def test_answers_become_reasons(
    pki: Pki, kubelet: _Kubelet, status: int, body: str, reason: str
) -> None:
    kubelet.answer = (status, body)
    with pytest.raises(KubeletError) as info:
        _client(pki, kubelet.server_port).checkpoint("ns", "p", "c", None)
    assert info.value.reason == reason


def test_wrong_ca_is_a_tls_error(pki: Pki, kubelet: _Kubelet) -> None:
    with pytest.raises(KubeletError) as info:
        _client(pki, kubelet.server_port, ca=pki.other_ca).checkpoint("ns", "p", "c", 5)
    assert info.value.reason == "KubeletTLSError"
    assert kubelet.seen == []


def test_refused_port_is_unreachable(pki: Pki) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(KubeletError) as info:
            _client(pki, port).checkpoint("ns", "p", "c", 5)
    assert info.value.reason == "KubeletUnreachable"


@pytest.mark.slow  # waits out a 1.5 s call deadline
def test_a_kubelet_that_never_answers_times_out(pki: Pki, kubelet: _Kubelet) -> None:
    kubelet.hang.set()
    started = time.monotonic()
    with pytest.raises(KubeletCallAbandoned) as info:
        client = _client(pki, kubelet.server_port, margin=0.5, runtime_request_timeout=1.0)
        client.checkpoint("ns", "p", "c", 1)
    assert info.value.reason == "Timeout"
    assert "within 1.5 s" in info.value.message
    assert time.monotonic() - started < 4  # the agent gave up; the kubelet still "dumps"


@pytest.mark.slow  # waits out the kubelet's 2 s timeout
def test_a_short_timeout_waits_for_the_kubelets_runtime_request_timeout(
    pki: Pki, kubelet: _Kubelet
) -> None:
    """The kubelet raises ?timeout=1 to its runtimeRequestTimeout (cri-client
    CheckpointContainer): a 2 s dump still succeeds there, so the agent must wait for it."""
    kubelet.delay = 2.0
    client = _client(pki, kubelet.server_port, margin=0.5, runtime_request_timeout=3.0)
    started = time.monotonic()
    path = client.checkpoint("ns", "p", "c", 1)
    assert path.endswith(".tar")
    assert time.monotonic() - started >= 2.0
    assert kubelet.seen == [("/checkpoint/ns/p/c?timeout=1", "forensic-checkpoint-agent")]
    # A timeout above the runtime request timeout is the kubelet's deadline as asked.
    assert client.deadline(10) == 10.5 and client.deadline(None) == client.deadline(1) == 3.5


def test_settings_are_checked(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kubelet-ca"):
        KubeletAuth(client_cert=pki.client_cert, client_key=pki.client_key).validate()
    with pytest.raises(ConfigError, match="go together"):
        KubeletAuth(client_cert=pki.client_cert, ca_file=pki.ca).validate()
    with pytest.raises(ConfigError, match="not a readable file"):
        KubeletAuth(token_file=tmp_path / "none", ca_file=pki.ca).validate()
    KubeletAuth(token_file=pki.ca, insecure_skip_tls_verify=True).validate()


def test_skipping_verification_is_explicit_and_works(
    pki: Pki, kubelet: _Kubelet, caplog: pytest.LogCaptureFixture
) -> None:
    auth = KubeletAuth(
        client_cert=pki.client_cert, client_key=pki.client_key, insecure_skip_tls_verify=True
    )
    with caplog.at_level("WARNING"):
        client = KubeletClient("node-1", "127.0.0.1", kubelet.server_port, auth)
    assert "VERIFICATION IS DISABLED" in caplog.text
    assert client.checkpoint("ns", "p", "c", 5).endswith(".tar")


def test_a_token_caller_of_a_kubelet_that_demands_a_certificate_gets_a_tls_error(
    pki: Pki, kubelet: _Kubelet, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("not-a-client-certificate\n")
    auth = KubeletAuth(token_file=token, ca_file=pki.ca)
    with pytest.raises(KubeletError) as info:
        KubeletClient("node-1", "127.0.0.1", kubelet.server_port, auth).checkpoint(
            "ns", "p", "c", 5
        )
    assert info.value.reason == "KubeletTLSError", info.value.message
    assert kubelet.seen == []


def test_a_tls_failure_inside_a_connection_error_is_a_tls_error(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under TLS 1.3 a server's certificate alert can arrive after the request went out; then
    urllib3 raises a ProtocolError carrying the SSLError and requests turns it into a plain
    ConnectionError (the shape below), not an SSLError. Timing decides which one a real server
    produces, so the shape is raised here as requests raises it."""
    alert = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert")
    aborted = requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", alert)
    )

    def post(*_: object, **__: object) -> requests.Response:
        raise aborted

    monkeypatch.setattr(requests.Session, "post", post)
    with pytest.raises(KubeletError) as info:
        _client(pki, 10250).checkpoint("ns", "p", "c", 5)
    assert info.value.reason == "KubeletTLSError", info.value.message


def test_a_connect_timeout_is_unreachable_not_an_abandoned_call(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connect that times out never reached the kubelet: nothing was started on the node, so
    the call is not "abandoned" (no late archive to watch for)."""

    def no_route(*_: object, **__: object) -> socket.socket:
        raise TimeoutError("timed out")

    monkeypatch.setattr("urllib3.util.connection.create_connection", no_route)
    with pytest.raises(KubeletError) as info:
        _client(pki, 10250).checkpoint("ns", "p", "c", 5)
    assert info.value.reason == "KubeletUnreachable", info.value.message
    assert not isinstance(info.value, KubeletCallAbandoned)


@pytest.mark.parametrize("status", [502, 503, 599])
def test_an_unknown_server_error_falls_back_to_kubelet_error(
    pki: Pki, kubelet: _Kubelet, status: int
) -> None:
    kubelet.answer = (status, "upstream overloaded")
    with pytest.raises(KubeletError) as info:
        _client(pki, kubelet.server_port).checkpoint("ns", "p", "c", None)
    assert info.value.reason == "KubeletError"
    assert f"HTTP {status}" in info.value.message and "upstream overloaded" in info.value.message
    assert info.value.remediation
