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
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import zstandard
from kubernetes import client as k8s

from forensic_checkpoint.errors import ClusterError, ConfigError, ForensicCheckpointError
from forensic_checkpoint.k8s.client import from_kubeconfig
from forensic_checkpoint.k8s.reviews import subject_access_review, token_review
from forensic_checkpoint_dev.apiserver import STRATEGIC_PATCH, call
from forensic_checkpoint_dev.kubelet.faults import (
    ARCHIVE_ANNOTATION,
    CANCELED,
    DEADLINE_EXCEEDED,
    DEFAULT_RUNTIME_REQUEST_TIMEOUT,
    FAULT_ANNOTATION,
    Fault,
    NodeSettings,
    parse_fault,
)

KUBELET_VERSION = "v1.36.3"
FAKE_NODE_TAINT = {
    "key": "forensic-checkpoint.dev/fake-kubelet",
    "value": "true",
    "effect": "NoSchedule",
}
_TIMEOUT_VALUE = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class KubeletConfig:
    node_name: str
    kubeconfig: Path  #: the node's own identity towards the API server
    serving_cert: Path
    serving_key: Path
    client_ca: Path  #: the kubelet client CA (the cluster CA)
    checkpoint_dir: Path
    state_dir: Path  #: ready file, decompressed default archive
    default_archive: Path
    #: What the real node here reports (kubelet v1.36.3 on containerd 2.3.4, real-node.md).
    runtime_version: str = "containerd://2.3.4"
    #: The kubelet configuration's runtimeRequestTimeout, in seconds.
    runtime_request_timeout: float = DEFAULT_RUNTIME_REQUEST_TIMEOUT
    #: Where it listens and the InternalIP it registers. A real kubelet refuses a loopback node
    #: IP, and the API server's node proxy refuses to dial one, so the dev cluster passes the
    #: machine's address; loopback only where the machine has none.
    address: str = "127.0.0.1"

    @classmethod
    def load(cls, path: Path) -> KubeletConfig:
        raw = json.loads(path.read_text())
        return cls(
            node_name=raw["nodeName"],
            kubeconfig=Path(raw["kubeconfig"]),
            serving_cert=Path(raw["servingCert"]),
            serving_key=Path(raw["servingKey"]),
            client_ca=Path(raw["clientCA"]),
            checkpoint_dir=Path(raw["checkpointDir"]),
            state_dir=Path(raw["stateDir"]),
            default_archive=Path(raw["defaultArchive"]),
            runtime_version=raw.get("runtimeVersion", cls.runtime_version),
            runtime_request_timeout=float(
                raw.get("runtimeRequestTimeout", cls.runtime_request_timeout)
            ),
            address=raw.get("address", cls.address),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "nodeName": self.node_name,
            "kubeconfig": str(self.kubeconfig),
            "servingCert": str(self.serving_cert),
            "servingKey": str(self.serving_key),
            "clientCA": str(self.client_ca),
            "checkpointDir": str(self.checkpoint_dir),
            "stateDir": str(self.state_dir),
            "defaultArchive": str(self.default_archive),
            "runtimeVersion": self.runtime_version,
            "runtimeRequestTimeout": self.runtime_request_timeout,
            "address": self.address,
        }


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    #: The client went away during the call: the answer has nowhere to go.
    canceled: bool = False


class Caller:
    """The client of one checkpoint call as the kubelet's request context sees it: the CRI
    call runs on ``request.Request.Context()``, which Go cancels when the connection closes."""

    def __init__(self, sock: socket.socket | None) -> None:
        self._sock = sock

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; ``False`` as soon as the client has disconnected."""
        deadline = time.monotonic() + seconds
        if self._sock is None:
            time.sleep(max(0.0, seconds))
            return True
        poller = select.poll()
        # RDHUP: the peer closed (FIN); HUP/ERR: reset. The request body was read already.
        poller.register(self._sock.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if poller.poll(min(left, 0.1) * 1000):
                return False


def _log(text: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")
    sys.stderr.write(f"{stamp} {text}\n")


def _text(status: int, text: str) -> Reply:
    return Reply(status, text.encode())


class FakeKubelet:
    """The node's state and decisions; the HTTP handler only moves bytes."""

    def __init__(self, config: KubeletConfig) -> None:
        self.config = config
        self.api = from_kubeconfig(config.kubeconfig)
        self.settings = NodeSettings(
            runtime_version=config.runtime_version,
            runtime_request_timeout=config.runtime_request_timeout,
        )
        self.port = 0
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []
        # Serialises writes to one target path, as the runtime would hold the container lock.
        self._write_lock = threading.Lock()

    # --- node registration -----------------------------------------------------------------

    def register(self) -> None:
        name = self.config.node_name
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            # It runs no pods: the scheduler must leave it alone (tests bind pods by nodeName).
            "spec": {"taints": [FAKE_NODE_TAINT]},
        }
        with contextlib.suppress(ClusterError):  # 409: registered by an earlier run
            call(f"create node {name}", k8s.CoreV1Api(self.api).create_node, node)
        self.publish_status()

    def publish_status(self) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": self.config.address},
                    {"type": "Hostname", "address": self.config.node_name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                "nodeInfo": {
                    "containerRuntimeVersion": self.settings.runtime_version,
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "osImage": "forensic-checkpoint fake node",
                    "kernelVersion": os.uname().release,
                    "machineID": self.config.node_name,
                    "systemUUID": self.config.node_name,
                    "bootID": self.config.node_name,
                },
                "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "fake kubelet is posting ready status",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
            }
        }
        call(
            f"patch node {self.config.node_name} status",
            k8s.CoreV1Api(self.api).patch_node_status,
            self.config.node_name,
            status,
            _content_type=STRATEGIC_PATCH,
        )

    # --- call log --------------------------------------------------------------------------

    def record(self, path: str, status: int, user: str | None, *, canceled: bool = False) -> None:
        entry = {"path": path, "status": status, "user": user, "time": time.time()}
        if canceled:
            entry["canceled"] = True  # the client disconnected during the dump
        with self._lock:
            self._calls.append(entry)

    def calls(self) -> dict[str, Any]:
        with self._lock:
            return {"count": len(self._calls), "calls": list(self._calls)}

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # --- authentication and authorisation --------------------------------------------------

    def authenticate(
        self, peer_cert: dict[str, Any] | None, authorization: str | None
    ) -> tuple[str, tuple[str, ...], str] | None:
        """(user, groups, uid) like the kubelet's authenticator union: x509 first, then token."""
        if peer_cert:
            user, groups = "", []
            for rdn in peer_cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        user = value
                    elif key == "organizationName":
                        groups.append(value)
            if user:
                return user, (*groups, "system:authenticated"), ""
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
            if token:
                result = token_review(self.api, token)
                if result.authenticated:
                    return result.username, result.groups, result.uid
        return None

    # --- the checkpoint handler ------------------------------------------------------------

    def checkpoint(
        self,
        path: str,
        query: str,
        peer_cert: dict[str, Any] | None,
        authorization: str | None,
        caller: Caller | None = None,
    ) -> Reply | Fault:
        """The kubelet's answer, or a ``Fault`` with ``reset`` the handler must act on.
        Every call is recorded, whatever its outcome."""
        user: list[str] = []
        result = self._checkpoint(
            path, query, peer_cert, authorization, user_out=user, caller=caller or Caller(None)
        )
        self.record(
            path,
            result.status if isinstance(result, Reply) else 0,
            next(iter(user), None),
            canceled=isinstance(result, Reply) and result.canceled,
        )
        return result

    def _checkpoint(
        self,
        path: str,
        query: str,
        peer_cert: dict[str, Any] | None,
        authorization: str | None,
        *,
        user_out: list[str],
        caller: Caller,
    ) -> Reply | Fault:
        if not self.settings.checkpoint_gate:
            return _text(404, "404 page not found\n")  # route not registered: before auth
        parts = path.removeprefix("/checkpoint/").split("/")
        if len(parts) != 3 or not all(parts):
            return _text(404, "404 page not found\n")
        namespace, pod_name, container = (unquote(p) for p in parts)
        try:
            identity = self.authenticate(peer_cert, authorization)
        except ForensicCheckpointError:
            identity = None  # authenticator error: the kubelet answers 401 too
        if identity is None:
            return _text(401, "Unauthorized")
        user, groups, uid = identity
        user_out.append(user)
        try:
            allowed = subject_access_review(
                self.api,
                user,
                groups,
                "create",
                "nodes",
                "checkpoint",
                self.config.node_name,
                uid=uid,
            )
        except ForensicCheckpointError:
            return _text(
                500,
                f"Authorization error (user={user}, verb=create, resource=nodes, "
                "subresource=checkpoint)",
            )
        if not allowed:
            return _text(
                403,
                f"Forbidden (user={user}, verb=create, resource=nodes, "
                "subresource(s)=[checkpoint])\n",
            )
        return self._checkpoint_pod(namespace, pod_name, container, query, caller)

    def _find_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        pods = call(
            f"list pods in {namespace}",
            k8s.CoreV1Api(self.api).list_namespaced_pod,
            namespace,
            field_selector=f"spec.nodeName={self.config.node_name}",
        )
        for pod in pods.get("items", []):
            if pod["metadata"]["name"] == name:
                return dict(pod)
        return None

    def _checkpoint_pod(
        self, namespace: str, pod_name: str, container: str, query: str, caller: Caller
    ) -> Reply | Fault:
        try:
            pod = self._find_pod(namespace, pod_name)
        except ForensicCheckpointError:
            pod = None
        if pod is None:
            return _text(404, "pod does not exist")
        spec = pod.get("spec", {})
        names = {
            c.get("name")
            for key in ("containers", "initContainers", "ephemeralContainers")
            for c in spec.get(key) or []
        }
        if container not in names:
            return _text(404, f"container {container} does not exist")
        timeout = 0
        timeouts = parse_qs(query, keep_blank_values=True).get("timeout")
        if timeouts:
            if not _TIMEOUT_VALUE.match(timeouts[-1]):
                return _text(404, "cannot parse value of timeout parameter")
            timeout = int(timeouts[-1])
        return self._run(pod, container, timeout, caller)

    def _run(  # noqa: PLR0911 - one return per kubelet outcome
        self, pod: dict[str, Any], container: str, timeout: int, caller: Caller
    ) -> Reply | Fault:
        """The part behind the kubelet's CheckpointContainer(): findContainer, then the CRI."""
        meta = pod["metadata"]
        target = f"{meta['namespace']}/{meta['name']}/{container}"
        failed = f"checkpointing of {target} failed"
        annotations = meta.get("annotations") or {}
        try:
            fault = parse_fault(annotations.get(FAULT_ANNOTATION))
        except ConfigError as exc:
            return _text(500, f"{failed} ({exc.message})")
        if fault.gate_off:
            return _text(404, "404 page not found\n")
        if not _running(pod, container):
            # findContainer() finds no running container: the kubelet fails before the CRI.
            return _text(500, f"{failed} (container {container} not found)")
        # cri-client CheckpointContainer: a timeout below runtimeRequestTimeout is raised to it.
        budget = self.settings.deadline(timeout)
        dump = budget if fault.hang else min(fault.latency, budget)
        started = time.monotonic()
        if not caller.wait(dump):
            return self._canceled(pod, container, fault, dump - (time.monotonic() - started))
        if fault.hang or fault.latency > budget:
            return _text(500, f"{failed} ({DEADLINE_EXCEEDED})")
        if fault.reset:
            return fault
        error = fault.error or self.settings.fail_with
        if error:
            return _text(500, f"{failed} ({error})")
        try:
            location = self._write_archive(pod, container, annotations.get(ARCHIVE_ANNOTATION))
        except OSError as exc:
            return _text(500, f"{failed} (rpc error: code = Unknown desc = {exc})")
        return Reply(200, json.dumps({"items": [str(location)]}).encode(), "application/json")

    def _canceled(self, pod: dict[str, Any], container: str, fault: Fault, left: float) -> Reply:
        """The client disconnected during the dump: containerd aborts it ("context canceled")
        and writes nothing, unless the archive was already written (``late-file``)."""
        meta = pod["metadata"]
        target = f"{meta['namespace']}/{meta['name']}/{container}"
        text = f"checkpointing of {target} failed ({CANCELED})"
        if not fault.late_file or fault.hang:
            _log(
                f'CheckpointContainer for "{target}" failed: {CANCELED}: the client '
                "disconnected during the dump; no archive written"
            )
            return Reply(500, text.encode(), canceled=True)
        time.sleep(max(0.0, left))
        location = self._write_archive(
            pod, container, meta.get("annotations", {}).get(ARCHIVE_ANNOTATION)
        )
        _log(
            f'CheckpointContainer for "{target}": the client disconnected, but the runtime had '
            f"already written the archive: {location}"
        )
        return Reply(500, text.encode(), canceled=True)

    def _write_archive(self, pod: dict[str, Any], container: str, source: str | None) -> Path:
        meta = pod["metadata"]
        # kubelet.go: checkpoint-<podFullName>-<container>-<RFC3339>.tar, one-second resolution;
        # a second request in the same second gets the same name and overwrites the first.
        stamp = datetime.now().astimezone().replace(microsecond=0).isoformat()
        stamp = stamp.replace("+00:00", "Z")
        name = f"checkpoint-{meta['name']}_{meta['namespace']}-{container}-{stamp}.tar"
        location = self.config.checkpoint_dir / name
        archive = Path(source) if source else self.config.default_archive
        with self._write_lock:
            fd = os.open(location, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as out:
                _copy_archive(archive, out)
        return location


def _running(pod: dict[str, Any], container: str) -> bool:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == container:
                return "running" in (cs.get("state") or {})
    return False


def _copy_archive(source: Path, out: Any) -> None:
    with source.open("rb") as src:
        if source.suffix == ".zst":
            zstandard.ZstdDecompressor().copy_stream(src, out)
        else:
            shutil.copyfileobj(src, out, 1 << 20)


def prepare_default_archive(compressed: Path, target: Path) -> Path:
    """The kubelet writes plain tar: decompress the bundled sample once per node."""
    if not target.exists():
        tmp = target.with_suffix(".part")
        with tmp.open("wb") as out:
            _copy_archive(compressed, out)
        tmp.replace(target)
    return target


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
            self._send(_text(404, "404 page not found\n"))
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
            self._send(_text(200, "ok"))
        elif path == "/_fake/calls":
            self._json(200, kubelet.calls())
        elif path == "/_fake/config":
            self._json(200, kubelet.settings.to_json())
        else:
            self._send(_text(404, "404 page not found\n"))

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/_fake/calls":
            self.server.kubelet.reset_calls()
            self._json(200, {"count": 0, "calls": []})
        else:
            self._send(_text(404, "404 page not found\n"))

    def do_PUT(self) -> None:
        if urlsplit(self.path).path != "/_fake/config":
            self._send(_text(404, "404 page not found\n"))
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
