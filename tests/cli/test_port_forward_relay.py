"""The port-forward relay of `kubectl forensic get-archive` (k8s/agent_tunnel.Tunnel) on a fake
websocket: bytes arrive whole and in order, a slow reader holds the websocket back (bounded
memory, not a backlog of the whole archive), the error channel is kept, and what the local side
sends goes out on the data channel. (Through a real API server: tests/realnode.)"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from websocket import ABNF

from forensic_checkpoint.k8s import agent_tunnel
from forensic_checkpoint.k8s.agent_tunnel import AgentPod, Tunnel

FRAME = 32 << 10
PORT_FRAME = b"\xfb\x20"  # 8443, little endian, as the kubelet names the port


class FakeWebSocket:
    """Frames from ``frames``; ``sock`` is always readable (a byte nobody reads), as a busy
    websocket is; ``handed`` counts the data bytes given out."""

    def __init__(self, frames: Iterator[tuple[int, bytes]]) -> None:
        self.sock, self._peer = socket.socketpair()
        self._peer.send(b"x")
        self._frames = frames
        self.handed = 0
        self.sent: list[bytes] = []

    def recv_data_frame(self, _control: bool) -> tuple[int, Any]:
        opcode, data = next(self._frames, (ABNF.OPCODE_CLOSE, b""))
        if opcode == ABNF.OPCODE_BINARY and data[:1] == b"\x00" and len(data) > 3:
            self.handed += len(data) - 1
        return opcode, SimpleNamespace(data=data)

    def send(self, data: bytes, opcode: int) -> None:
        self.sent.append(data)

    def abort(self) -> None:
        pass

    def shutdown(self) -> None:
        self.sock.close()
        self._peer.close()


def frames(payload: bytes, error: bytes = b"") -> Iterator[tuple[int, bytes]]:
    yield ABNF.OPCODE_BINARY, b"\x00" + PORT_FRAME
    yield ABNF.OPCODE_BINARY, b"\x01" + PORT_FRAME
    for start in range(0, len(payload), FRAME):
        yield ABNF.OPCODE_BINARY, b"\x00" + payload[start : start + FRAME]
    if error:
        yield ABNF.OPCODE_BINARY, b"\x01" + error


def read_all(sock: socket.socket, pause: float = 0.0, ws: FakeWebSocket | None = None) -> bytes:
    got = bytearray()
    backlog = 0
    while chunk := sock.recv(1 << 20):
        got += chunk
        if ws is not None:
            backlog = max(backlog, ws.handed - len(got))
        time.sleep(pause)
    if ws is not None:
        # What the relay holds, plus what the socketpair buffers, plus one frame.
        assert backlog <= agent_tunnel._RELAY_BUFFER + (2 << 20), backlog
    return bytes(got)


def test_the_relay_delivers_every_byte_in_order_and_keeps_the_error() -> None:
    payload = os.urandom(8 << 20)
    ws = FakeWebSocket(frames(payload, b"error forwarding port 8443"))
    with Tunnel(AgentPod("ns", "agent", 8443), ws) as tunnel:
        tunnel.sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        got = read_all(tunnel.sock)
        assert tunnel.error() == "error forwarding port 8443"
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert b"".join(ws.sent) == b"\x00GET / HTTP/1.1\r\n\r\n"


def test_a_slow_reader_holds_the_websocket_back(monkeypatch: Any) -> None:
    monkeypatch.setattr(agent_tunnel, "_RELAY_BUFFER", 256 << 10)
    payload = os.urandom(4 << 20)
    ws = FakeWebSocket(frames(payload))
    with Tunnel(AgentPod("ns", "agent", 8443), ws) as tunnel:
        got = read_all(tunnel.sock, pause=0.005, ws=ws)
    assert got == payload


def test_closing_the_tunnel_ends_the_relay() -> None:
    def endless() -> Iterator[tuple[int, bytes]]:
        yield ABNF.OPCODE_BINARY, b"\x00" + PORT_FRAME
        while True:
            yield ABNF.OPCODE_BINARY, b"\x00" + bytes(FRAME)

    tunnel = Tunnel(AgentPod("ns", "agent", 8443), FakeWebSocket(endless()))
    tunnel.sock.recv(FRAME)
    tunnel.close()
    assert not tunnel._thread.is_alive()
