"""The agent's HTTPS API (routes in :mod:`forensic_checkpoint.api.agent`).

A threaded stdlib server: every request is short except archive downloads, which stream from
disk in chunks, and a thread per connection keeps one slow download from holding up the
operator's polls. The TLS handshake runs in the connection's thread, not in the accept loop.
Connections are bounded: at most ``max_connections`` at once, each closed after
``idle_timeout`` seconds without progress. A request the agent cannot record because its disk
is full is answered 507 ``AgentStorageFull`` and logged, not dropped; a new capture while the
queue is at its bound, 503 ``AgentQueueFull`` with ``Retry-After`` (nothing recorded).

Over 400 lines because the server (TLS, connection bounds) and the handler (routes, the
mapping of every failure to an answer) are one contract with the operator's client; the serving
certificate's reloading would be the piece to move out next.
``/healthz`` and ``/metrics`` carry no evidence and need no token; everything under
``/v1/captures`` does.
"""

from __future__ import annotations

import errno
import logging
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from forensic_checkpoint import __version__
from forensic_checkpoint.agent.capture.service import CaptureService
from forensic_checkpoint.agent.http.auth import Authenticator
from forensic_checkpoint.agent_identity import agent_audience
from forensic_checkpoint.api.agent import (
    API_PREFIX,
    SHA256_HEADER,
    CaptureRequest,
    CaptureState,
    ErrorBody,
    Health,
    HoldRequest,
    WireModel,
)
from forensic_checkpoint.errors import (
    AgentQueueFull,
    CaptureError,
    ConflictError,
    ForensicCheckpointError,
    NotFoundError,
)

log = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024
#: An open connection that sends nothing (no TLS handshake, no next request on a keep-alive
#: connection, a stalled read or write) is closed after this many seconds.
DEFAULT_IDLE_TIMEOUT = 30.0
#: Connections served at once (a thread each); more are closed at accept, with a log line.
DEFAULT_MAX_CONNECTIONS = 64
_REFUSAL_LOG_EVERY = 10.0
#: Seconds a caller refused for a full queue is told to wait (``Retry-After``).
_QUEUE_FULL_RETRY = 5
_CHUNK = 1024 * 1024
_KEY_ROUTE = re.compile(
    rf"^{API_PREFIX}/(?P<key>[a-z0-9-]{{1,128}})(?P<sub>/report|/archive|/hold)?$"
)


def tls_context(cert_file: Path, key_file: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """Serving TLS; with ``client_ca``, client certificates signed by it are verified (and
    optional: callers without one use a bearer token)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(str(client_ca))
    return context


class ReloadingTLS:
    """The serving context, rebuilt when the certificate files change on disk.

    Certificates mounted from a Secret (cert-manager, a rotated CA) are replaced in place; the
    agent picks the new ones up for new connections without a restart. A broken new pair
    (half written, mismatched) keeps the old context and is logged.
    """

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        client_ca: Path | None = None,
        *,
        check_every: float = 5.0,
    ) -> None:
        self._files = (cert_file, key_file, client_ca)
        self.check_every = check_every
        self._context = tls_context(cert_file, key_file, client_ca)
        self._stamp = self._stat()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for path in self._files:
            if path is None:
                continue
            try:
                info = path.stat()
                stamps.append((info.st_mtime_ns, info.st_ino))
            except OSError:
                stamps.append((0, 0))
        return tuple(stamps)

    def __call__(self) -> ssl.SSLContext:
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self.check_every:
                return self._context
            self._checked = now
            stamp = self._stat()
            if stamp == self._stamp:
                return self._context
            cert, key, ca = self._files
            try:
                self._context = tls_context(cert, key, ca)
            except (OSError, ssl.SSLError) as exc:
                log.warning("new serving certificate not loaded, keeping the old one: %s", exc)
                return self._context
            self._stamp = stamp
            log.info("serving certificate reloaded from %s", cert)
            return self._context


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        service: CaptureService,
        authenticator: Authenticator,
        tls: ssl.SSLContext | Callable[[], ssl.SSLContext] | None,
        operator_cert_cn: str | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._refused_logged = float("-inf")
        self.service = service
        self.authenticator = authenticator
        #: mTLS alternative: a client certificate (verified against the client CA given to
        #: :func:`tls_context`) with exactly this common name is the operator.
        self.operator_cert_cn = operator_cert_cn
        self.tls = tls
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        if self.tls is not None:
            context = self.tls if isinstance(self.tls, ssl.SSLContext) else self.tls()
            conn = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, at most ``max_connections`` of them: idle clients cannot
        grow the agent's threads without bound (each is also closed after ``idle_timeout``)."""
        if not self._slots.acquire(blocking=False):
            now = time.monotonic()
            if now - self._refused_logged >= _REFUSAL_LOG_EVERY:
                self._refused_logged = now
                log.warning(
                    "connection from %s closed: %d connections open (the limit)",
                    client_address[0],
                    self.max_connections,
                )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes (port scanners, plain-HTTP clients) are not worth a traceback.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"
    server_version = f"forensic-checkpoint-agent/{__version__}"
    _status = 0

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout)  # every read and write, handshake too
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", self.client_address, exc)
                self.close_connection = True
                raise ConnectionAbortedError from exc

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    # --- dispatch ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        route = "other"
        try:
            if path == "/healthz" and method == "GET":
                route = "healthz"
                self._healthz()
                return
            if path == "/metrics" and method == "GET":
                route = "metrics"
                self._send_bytes(
                    200, self.server.service.metrics.render(), "text/plain; version=0.0.4"
                )
                return
            route = self._capture_route(method, path)
        except NotFoundError as exc:
            self._error(404, exc.reason, exc.message)
        except ConflictError as exc:
            self._error(409, exc.reason, exc.message)
        except AgentQueueFull as exc:  # nothing recorded: the operator asks again (retryable)
            self._error(503, exc.reason, exc.message, {"Retry-After": str(_QUEUE_FULL_RETRY)})
        except CaptureError as exc:
            self._error(409, exc.reason, exc.message)
        except ForensicCheckpointError as exc:
            log.warning("%s %s: %s", method, path, exc.message)
            self._error(500, exc.reason, exc.message)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except OSError as exc:  # the disk, not the peer: e.g. a full jobs/ directory
            self._storage_error(method, path, exc)
        finally:
            self.server.service.metrics.http_requests.labels(
                route=route, status=str(self._status)
            ).inc()

    def _capture_route(self, method: str, path: str) -> str:
        if path == API_PREFIX:
            return self._collection_route(method)
        match = _KEY_ROUTE.match(path)
        if match is None:
            self._drain()
            self._error(404, "NotFound", f"no route {method} {path}")
            return "other"
        key, sub = match["key"], match["sub"]
        route = {None: "capture", "/report": "report", "/archive": "archive", "/hold": "hold"}[sub]
        allowed = {None: ("GET", "DELETE"), "/hold": ("PUT",)}.get(sub, ("GET",))
        if method not in allowed:
            self._error(405, "MethodNotAllowed", f"{method} {path}")
            return route
        if not self._authorized(read_only=sub in ("/report", "/archive")):
            return route
        service = self.server.service
        if sub is None and method == "GET":
            wait_while, timeout = _status_wait(self.path)
            self._send_model(200, service.status(key, wait_while=wait_while, timeout=timeout))
        elif sub is None:
            self._send_model(200, service.delete(key))
        elif sub == "/hold":
            self._hold(key)
        elif sub == "/report":
            report = service.report_file(key)
            self._send_bytes(200, report.read_bytes(), "application/json")
        else:
            self._archive(key)
        return route

    def _collection_route(self, method: str) -> str:
        """``POST`` a capture, or ``GET`` the digest of every job (the operator only)."""
        if method not in ("POST", "GET"):
            self._error(405, "MethodNotAllowed", f"{method} {API_PREFIX}")
            return "captures"
        if not self._authorized():
            return "list" if method == "GET" else "create"
        if method == "GET":
            self._send_model(200, self.server.service.digests())
            return "list"
        self._create()
        return "create"

    def _storage_error(self, method: str, path: str, exc: OSError) -> None:
        """Say so to the caller and in the log, instead of dropping the connection silently."""
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        log.error("%s %s: cannot write agent state: %s", method, path, exc)
        if self._status:  # the answer had started: nothing to add on this connection
            self.close_connection = True
            return
        if full:
            reason, message = "AgentStorageFull", f"the agent's state directory is full: {exc}"
        else:
            reason, message = "AgentStorageError", f"the agent cannot write its state: {exc}"
        self._error(507 if full else 500, reason, message)

    # --- handlers ---------------------------------------------------------------------------

    def _authorized(self, *, read_only: bool = False) -> bool:
        """The operator may do everything; an archive reader only download (``read_only``)."""
        header = self.headers.get("Authorization")
        if not header and self._operator_certificate():
            return True
        authenticator = self.server.authenticator
        decision = authenticator.check(header, read_only=read_only)
        if decision.allowed:
            return True
        self._drain()
        if decision.status == 403 and decision.username in authenticator.readers:
            message = f"{decision.username} may only download archives and reports"
        elif decision.status == 403:
            message = f"{decision.username} is not {authenticator.expected_identity}"
        else:
            message = (
                "a valid bearer token of the operator's ServiceAccount, issued for this node's "
                f"agent audience ({agent_audience(self.server.service.node_name)}), is required"
            )
        extra = {"WWW-Authenticate": "Bearer"} if decision.status == 401 else {}
        self._error(decision.status, decision.reason, message, extra)
        return False

    def _operator_certificate(self) -> bool:
        expected = self.server.operator_cert_cn
        if not expected or not isinstance(self.connection, ssl.SSLSocket):
            return False
        peer = self.connection.getpeercert()  # only verified certificates are returned
        if not peer:
            return False
        subject: Any = peer.get("subject", ())
        names = [pair[1] for rdn in subject for pair in rdn if pair[0] == "commonName"]
        return names == [expected]

    def _healthz(self) -> None:
        service = self.server.service
        self._send_model(
            200,
            Health(
                node_name=service.node_name, queue_depth=service.queue_depth(), version=__version__
            ),
        )

    def _create(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > _MAX_BODY:
            self._drain()
            self._error(400 if length <= 0 else 413, "InvalidRequest", "body missing or too large")
            return
        body = self.rfile.read(length)
        try:
            request = CaptureRequest.model_validate_json(body)
        except ValidationError as exc:
            message = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            self._error(400, "InvalidRequest", message[:1024])
            return
        status, created = self.server.service.submit(request)
        self._send_model(202 if created else 200, status)

    def _hold(self, key: str) -> None:
        body = self._body()
        if body is None:
            return
        try:
            hold = HoldRequest.model_validate_json(body)
        except ValidationError as exc:
            self._error(400, "InvalidRequest", str(exc)[:1024])
            return
        self._send_model(200, self.server.service.set_hold(key, hold.hold))

    def _body(self) -> bytes | None:
        """The request body, or ``None`` after answering 400/413."""
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > _MAX_BODY:
            self._drain()
            self._error(400 if length <= 0 else 413, "InvalidRequest", "body missing or too large")
            return None
        return self.rfile.read(length)

    def _archive(self, key: str) -> None:
        path, info = self.server.service.archive_file(key)
        with path.open("rb") as handle:
            size = path.stat().st_size
            self._status = 200
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("Content-Length", str(size))
            self.send_header(SHA256_HEADER, info.sha256)
            self.send_header("Content-Disposition", f'attachment; filename="{path.name}"')
            self.end_headers()
            while chunk := handle.read(_CHUNK):
                self.wfile.write(chunk)

    # --- responses --------------------------------------------------------------------------

    def _drain(self) -> None:
        """Read an unread request body so the connection can be reused."""
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= _MAX_BODY:
            self.rfile.read(length)
        elif length > _MAX_BODY:
            self.close_connection = True

    def _send_model(self, status: int, model: WireModel) -> None:
        self._send_bytes(status, model.to_json().encode(), "application/json")

    def _error(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        body = ErrorBody(reason=reason, message=message).model_dump_json(by_alias=True)
        self._send_bytes(status, body.encode(), "application/json", headers)

    def _send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._status = status
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _status_wait(target: str) -> tuple[frozenset[CaptureState], float]:
    """``?waitWhile=Queued,Capturing&timeoutSeconds=20``: answer once the job left those
    states (the operator learns at once that a kubelet call ended); unknown states are
    ignored, so a malformed query answers at once like a plain GET."""
    query = parse_qs(urlsplit(target).query)
    names = ",".join(query.get("waitWhile", [])).split(",")
    known = {state.value for state in CaptureState}
    states = frozenset(CaptureState(name) for name in names if name in known)
    try:
        timeout = float(query.get("timeoutSeconds", ["0"])[0])
    except ValueError:
        timeout = 0.0
    return states, max(0.0, timeout) if math.isfinite(timeout) else 0.0
