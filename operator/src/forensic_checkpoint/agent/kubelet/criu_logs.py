"""CRIU's log of a failed checkpoint, read from the runtime's directories and nothing else.

The runtime names the log in its error (``domain.failures.criu_log.criu_log_path``), and the
log lies in a directory it shares with what the agent must not read:

- containerd 2.x + runc: ``<state>/io.containerd.runtime.v2.task/<ns>/<id>/criu-dump.log``, a
  copy the shim makes in the container's bundle, next to ``config.json`` (the environment) and
  ``rootfs/``. CRIU's own ``dump.log`` is in a work directory that containerd 2.3 removes when
  the call returns (``internal/cri/server/container_checkpoint_linux.go``).
- CRI-O: ``<storage>/overlay-containers/<id>/userdata/dump.log``, next to ``config.json``.

So the path named in an error is read only when it is exactly one of those two shapes under a
configured directory, with a container ID as the runtimes spell it; every component below the
configured directory is opened with ``O_NOFOLLOW`` (a symlink at any of them is refused, not
followed), and only a regular file is read, at most its last 256 KiB. In the chart this runs in
the ``criu-log-reader`` container (``.criu_log_reader``), which alone mounts those directories;
the agent asks it over a Unix socket (:class:`SocketCriuLogs`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from forensic_checkpoint.errors import ConfigError

log = logging.getLogger(__name__)

#: At most this much of a log's end is read: the error is at the end.
MAX_LOG_BYTES = 256 * 1024
#: containerd's identifier rule (``pkg/identifiers``: ``^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$``,
#: at most 76 characters); CRI IDs of both runtimes are 64 hex digits.
CONTAINER_ID = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
MAX_ID_LENGTH = 76
#: The file names below ``<dir>/<id>/`` that hold a CRIU log: containerd's, CRI-O's.
LOG_LAYOUTS: tuple[tuple[str, ...], ...] = (("criu-dump.log",), ("userdata", "dump.log"))
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: O_NONBLOCK: a FIFO planted under the name must not hang the reader.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(Exception):
    """The named path is not a CRIU log the reader may open; the message says why."""


class CriuLogSource(Protocol):
    def read(self, named: str) -> str | None:
        """The text of the CRIU log the runtime named, or None (not readable or refused)."""


def allowed_parts(named: str, dirs: Sequence[Path]) -> tuple[Path, tuple[str, ...]]:
    """The configured directory ``named`` lies in and the components below it, checked to be
    ``<id>/criu-dump.log`` or ``<id>/userdata/dump.log``; :class:`Refused` otherwise."""
    path = PurePosixPath(named)
    if not path.is_absolute() or str(path) != named or ".." in path.parts:
        raise Refused(f"{named!r} is not a normalised absolute path")
    for base in dirs:
        base_parts = PurePosixPath(base).parts
        if path.parts[: len(base_parts)] != base_parts:
            continue
        rest = path.parts[len(base_parts) :]
        if len(rest) >= 2 and rest[1:] in LOG_LAYOUTS and _is_container_id(rest[0]):
            return base, rest
        raise Refused(f"{named!r} is not <id>/criu-dump.log or <id>/userdata/dump.log under {base}")
    raise Refused(f"{named!r} is under none of the CRIU log directories")


def _is_container_id(name: str) -> bool:
    return len(name) <= MAX_ID_LENGTH and CONTAINER_ID.fullmatch(name) is not None


def read_log_file(base: Path, parts: Sequence[str]) -> bytes:
    """The last :data:`MAX_LOG_BYTES` of ``base/<parts>``, opened one component at a time
    without following a symlink; :class:`Refused` for a link or anything but a regular file,
    ``OSError`` when it is not there."""
    fds = [os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for name in parts[:-1]:
            fds.append(_open_below(fds[-1], name, _DIR_FLAGS))
        fd = _open_below(fds[-1], parts[-1], _FILE_FLAGS)
        fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{'/'.join(parts)} under {base} is not a regular file")
        os.lseek(fd, max(0, info.st_size - MAX_LOG_BYTES), os.SEEK_SET)
        data = bytearray()
        while len(data) < MAX_LOG_BYTES and (chunk := os.read(fd, MAX_LOG_BYTES - len(data))):
            data += chunk
        return bytes(data)
    finally:
        for fd in fds:
            os.close(fd)


def _open_below(dir_fd: int, name: str, flags: int) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        # O_NOFOLLOW on a symlink: ELOOP; O_DIRECTORY|O_NOFOLLOW on a link to a directory:
        # ENOTDIR. Both mean someone put a link where the runtime writes a file or directory.
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(dir_fd, name):
            raise Refused(
                f"{name!r} is a symlink; CRIU logs are read without following links"
            ) from None
        raise


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class LocalCriuLogs:
    """Reads CRIU logs itself, under ``dirs`` (the reader container; an agent run on the host
    with ``--criu-log-dir``)."""

    dirs: tuple[Path, ...]

    def read_bytes(self, named: str) -> bytes | None:
        """:class:`Refused` when ``named`` is not a CRIU log; None when it is not there."""
        base, parts = allowed_parts(named, self.dirs)
        try:
            return read_log_file(base, parts)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read(self, named: str) -> str | None:
        try:
            data = self.read_bytes(named)
        except Refused as exc:
            log.warning("CRIU log not read: %s", exc)
            return None
        except OSError as exc:
            log.info("CRIU log %s not readable: %s", named, exc)
            return None
        return None if data is None else data.decode("utf-8", "replace")


#: The reader's answers: ``ok\n`` and the log's bytes, or ``no <why>\n``.
OK = b"ok\n"
NO = b"no "
MAX_REQUEST_BYTES = 4096
SOCKET_TIMEOUT = 5.0


@dataclass(frozen=True)
class SocketCriuLogs:
    """Asks the ``criu-log-reader`` container over its Unix socket (the chart's agent: it does
    not mount the runtime's directories at all)."""

    socket_path: Path
    timeout: float = SOCKET_TIMEOUT

    def read(self, named: str) -> str | None:
        request = named.encode() + b"\n"
        if len(request) > MAX_REQUEST_BYTES:
            return None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout)
                conn.connect(str(self.socket_path))
                conn.sendall(request)
                answer = _receive(conn, len(OK) + MAX_LOG_BYTES)
        except OSError as exc:
            log.warning("CRIU log reader at %s did not answer: %s", self.socket_path, exc)
            return None
        if answer.startswith(OK):
            return answer[len(OK) :].decode("utf-8", "replace")
        log.info("CRIU log reader: %s", answer[len(NO) :].decode("utf-8", "replace").strip())
        return None


def _receive(conn: socket.socket, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := conn.recv(min(65536, limit - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def criu_log_source(socket_path: Path | None, dirs: Sequence[Path]) -> CriuLogSource | None:
    """The agent's CRIU log source from its flags (``--criu-log-socket``/``--criu-log-dir``)."""
    if socket_path is not None and dirs:
        raise ConfigError("--criu-log-socket and --criu-log-dir exclude each other")
    if socket_path is not None:
        return SocketCriuLogs(socket_path)
    if dirs:
        return LocalCriuLogs(tuple(dirs))
    log.warning(
        "no CRIU log source (--criu-log-socket or --criu-log-dir): a failed dump is reported "
        "with the runtime's message only, without CRIU's reason"
    )
    return None
