"""Child processes that never outlive the cluster: one process group each, killed as a group.

``die_with_parent`` (used by the pytest fixture) also asks the kernel to SIGKILL the child when
the starting process dies, so even a ``kill -9`` of pytest leaves nothing behind. ``cluster
up`` cannot use it (its children must outlive the command); ``down`` kills them by pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import requests

from forensic_checkpoint.errors import ToolError

_PR_SET_PDEATHSIG = 1
#: Children started by this process, so they are reaped (waited for) when stopped.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    log: Path,
    *,
    die_with_parent: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            proc = subprocess.Popen(
                [os.fspath(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, for a clean group kill
                preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509
                env=env,
            )
        except OSError as exc:
            raise ToolError(f"cannot start {argv[0]}: {exc}") from exc
    _children[proc.pid] = proc
    return proc


def alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in {"Z", "X", ""}  # a zombie still answers kill(0)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, an identity that a
    reused pid does not share."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def stop_group(pid: int, *, grace: float = 5.0) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        if wait_until(lambda: not alive(pid), wait):
            break
    # Stragglers in the group (children of the leader) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=5)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def free_port() -> int:
    """A loopback port free right now (the kernel's choice, so parallel clusters differ)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether anything listens on TCP ``port``, on any address (fake kubelets listen on the
    machine's address, the control plane on loopback)."""
    listen = "0A"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == listen and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 200 now (a health endpoint); False while nothing listens."""
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False
