"""A fake kubelet: the checkpoint API of one node, answered the way kubelet v1.36 answers it.

Run as ``python -m forensic_checkpoint_dev.kubelet.fake_kubelet CONFIG.json`` (the dev cluster
writes the file). On start it registers its ``Node`` with the node's own identity
(``system:node:<name>``, so the Node authoriser and NodeRestriction apply as they would to a
real kubelet), sets ``status.addresses``, ``daemonEndpoints`` and ``nodeInfo``, then serves:

``POST /checkpoint/{namespace}/{pod}/{container}[?timeout=N]``
    HTTPS; client certificates verified against the cluster (kubelet client) CA, bearer tokens
    through a ``TokenReview``, every request authorised by a ``SubjectAccessReview``
    (``create nodes/checkpoint <node>``); statuses and bodies as in kubelet's server.go. The
    runtime gets ``max(N, runtimeRequestTimeout)`` seconds (the CRI client raises a shorter
    timeout), and the dump runs on the request's context: when the client disconnects during
    the dump, it is cancelled and no archive is written (fault ``late-file``: it is written).
``GET /_fake/calls``, ``DELETE /_fake/calls``
    every checkpoint request seen (status, user), so tests can count kubelet calls.
``GET /_fake/config``, ``PUT /_fake/config``
    the node settings (:class:`~forensic_checkpoint_dev.kubelet.faults.NodeSettings`).
``GET /healthz``

The ``/_fake`` endpoints need no credentials: they exist for tests on loopback only.
Unlike a real kubelet this one does not cache webhook decisions, so RBAC changes apply at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from forensic_checkpoint.errors import ClusterError, ConfigError, ForensicCheckpointError
from forensic_checkpoint_dev.kubelet.config import KubeletConfig
from forensic_checkpoint_dev.kubelet.decisions import Caller, FakeKubelet, Reply, text_reply
from forensic_checkpoint_dev.kubelet.faults import (
    Fault,
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = ""
    sys_version = ""

    def setup(self) -> None:
        self.request.settimeout(30)
        self.request.do_handshake()  # in this thread, so a slow client never blocks accept()
        self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Date", self.date_time_string())
        self.end_headers()
        self.wfile.write(reply.body)

    def _json(self, status: int, value: Any) -> None:
        self._send(Reply(status, json.dumps(value).encode(), "application/json"))

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST instead of FIN: the client sees a reset.
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.request.close()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if not url.path.startswith("/checkpoint/"):
            self._send(text_reply(404, "404 page not found\n"))
            return
        kubelet = self.server.kubelet
        peer = self.request.getpeercert()
        result = kubelet.checkpoint(
            url.path, url.query, peer, self.headers.get("Authorization"), Caller(self.request)
        )
        if isinstance(result, Fault):
            self._reset()
        elif result.canceled:
            self.close_connection = True  # the client is gone: nothing to answer
        else:
            self._send(result)

    def do_GET(self) -> None:
        kubelet = self.server.kubelet
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(text_reply(200, "ok"))
        elif path == "/_fake/calls":
            self._json(200, kubelet.calls())
        elif path == "/_fake/config":
            self._json(200, kubelet.settings.to_json())
        else:
            self._send(text_reply(404, "404 page not found\n"))

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/_fake/calls":
            self.server.kubelet.reset_calls()
            self._json(200, {"count": 0, "calls": []})
        else:
            self._send(text_reply(404, "404 page not found\n"))

    def do_PUT(self) -> None:
        if urlsplit(self.path).path != "/_fake/config":
            self._send(text_reply(404, "404 page not found\n"))
            return
        kubelet = self.server.kubelet
        length = int(self.headers.get("Content-Length") or 0)
        try:
            patch = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(patch, dict):
                raise ConfigError("the body must be a JSON object")
            before = kubelet.settings.runtime_version
            kubelet.settings.update(patch)
            if kubelet.settings.runtime_version != before:
                kubelet.publish_status()
        except (ValueError, ForensicCheckpointError) as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, kubelet.settings.to_json())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    kubelet: FakeKubelet

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed TLS handshakes (a certificate from another CA) and reset connections are
        # normal here: one line, not a traceback.
        sys.stderr.write(f"{client_address[0]}:{client_address[1]} {sys.exc_info()[1]!r}\n")


def _register_when_api_answers(kubelet: FakeKubelet, timeout: float = 60.0) -> None:
    """The kubelet starts alongside the API server, so it retries like a real one does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            kubelet.register()
            return
        except ClusterError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def serve(config: KubeletConfig) -> None:
    kubelet = FakeKubelet(config)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.serving_cert, config.serving_key)
    context.load_verify_locations(config.client_ca)
    context.verify_mode = ssl.CERT_OPTIONAL  # tokens are the other way in
    server = _Server((config.address, 0), _Handler)
    server.kubelet = kubelet
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    kubelet.port = server.server_address[1]
    config.checkpoint_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _register_when_api_answers(kubelet)
    ready = config.state_dir / "ready.json"
    tmp = ready.with_suffix(".part")
    tmp.write_text(
        json.dumps({"port": kubelet.port, "pid": os.getpid(), "address": config.address})
    )
    tmp.replace(ready)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m forensic_checkpoint_dev.kubelet.fake_kubelet CONFIG.json",
            file=sys.stderr,
        )
        return 2
    serve(KubeletConfig.load(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
