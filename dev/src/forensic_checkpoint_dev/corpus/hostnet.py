"""The host's side of the corpus scenarios: listeners that catch reverse shells or play a
stratum pool, and client connections held open during a capture. (Pods reach the API server at
the `kubernetes` Service's ClusterIP through the real node's kube-proxy.)"""

from __future__ import annotations

import contextlib
import json
import socket
import threading

from forensic_checkpoint_dev.corpus.model import Client, Listener


class _Server:
    """A TCP server on 0.0.0.0:port whose connections stay open until ``close``."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("0.0.0.0", port), reuse_port=False)  # noqa: S104
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.accepted = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        for s in [self.sock, *self.conns]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def _drain(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass


class ShellCatcher(_Server):
    """Sends ``send`` (commands for the caught shell), then reads and drops what comes back."""

    def __init__(self, port: int, send: str) -> None:
        self.send = send.encode()
        super().__init__(port)

    def serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.send:
                conn.sendall(self.send)
        _drain(conn)


class StratumPool(_Server):
    """Answers each JSON-RPC line (mining.subscribe, mining.authorize) with a result, then
    sends nothing more: the miner holds an idle pool connection."""

    def serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError), conn.makefile("rwb") as f:
            for line in f:
                request = json.loads(line)
                result = (
                    [[["mining.notify", "corpus"]], "08000002", 4]
                    if request.get("method") == "mining.subscribe"
                    else True
                )
                reply = {"id": request.get("id"), "result": result, "error": None}
                f.write(json.dumps(reply).encode() + b"\n")
                f.flush()


def listener(spec: Listener) -> _Server:
    if spec.kind == "stratum":
        return StratumPool(spec.port)
    return ShellCatcher(spec.port, spec.send)


def open_client(pod_ip: str, client: Client, timeout: float = 10.0) -> socket.socket:
    """Connect to the pod, send the client's bytes and read the first answer (if any comes
    within a second); the socket stays open for the caller to close after the capture."""
    conn = socket.create_connection((pod_ip, client.port), timeout=timeout)
    payload = bytes.fromhex(client.send_hex) if client.send_hex else client.send.encode()
    if payload:
        conn.sendall(payload)
    conn.settimeout(1.0)
    with contextlib.suppress(OSError):
        conn.recv(65536)
    return conn
