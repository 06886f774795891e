"""The ``criu-log-reader`` process: the only part of the agent's pod that mounts the runtime's
directories (read-only), answering one question over a Unix socket: "the CRIU log at this
path". It answers only for paths :func:`.criu_logs.allowed_parts` accepts, so whoever controls
the agent container (say, through an archive crafted to exploit the analyzer) reaches CRIU
logs, not the bundles' ``config.json`` or root filesystems beside them.

One request per connection: the path and a newline (at most 4 KiB); the answer ``ok\\n`` and
the log's last 256 KiB, or ``no <why>\\n``. Connections are served one at a time, each within
:data:`.criu_logs.SOCKET_TIMEOUT`; only the agent's container shares the socket's volume.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

from forensic_checkpoint.agent.kubelet.criu_logs import (
    MAX_REQUEST_BYTES,
    NO,
    OK,
    SOCKET_TIMEOUT,
    LocalCriuLogs,
    Refused,
)
from forensic_checkpoint.errors import ConfigError

log = logging.getLogger(__name__)


class CriuLogReader:
    """Serves :class:`.LocalCriuLogs` on ``socket_path`` (created 0600, a stale one replaced)."""

    def __init__(self, socket_path: Path, logs: LocalCriuLogs) -> None:
        self.socket_path = socket_path
        self.logs = logs
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o177)
        try:
            self._server.bind(str(socket_path))
        except OSError as exc:
            self._server.close()
            raise ConfigError(f"cannot serve on {socket_path}: {exc.strerror}") from exc
        finally:
            os.umask(umask)
        self._server.listen(16)

    def serve_forever(self) -> None:
        """Answer until :meth:`close` (from another thread or a signal handler)."""
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(SOCKET_TIMEOUT)
                try:
                    conn.sendall(self.answer(_request(conn)))
                except OSError as exc:
                    log.info("CRIU log request dropped: %s", exc)

    def answer(self, request: bytes) -> bytes:
        if not request.endswith(b"\n"):
            return NO + b"request is not one line of at most 4 KiB\n"
        named = request[:-1].decode("utf-8", "replace")
        try:
            data = self.logs.read_bytes(named)
        except Refused as exc:
            log.warning("CRIU log refused: %s", exc)
            return NO + f"refused: {exc}\n".encode()
        except OSError as exc:
            return NO + f"not readable: {exc.strerror}\n".encode()
        if data is None:
            return NO + b"no such file\n"
        return OK + data

    def close(self) -> None:
        # shutdown() wakes a thread blocked in accept(); close() alone may not.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


def _request(conn: socket.socket) -> bytes:
    data = bytearray()
    while b"\n" not in data and len(data) <= MAX_REQUEST_BYTES:
        chunk = conn.recv(MAX_REQUEST_BYTES + 1 - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data[: data.find(b"\n") + 1]) if b"\n" in data else bytes(data)
