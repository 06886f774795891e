"""What a container's processes are, read from the host's /proc just before the capture.

Pids are those of the container's pid namespace (the last field of ``NSpid``), as CRIU records
them. For each process: comm, argv, exe, uid, the fds' targets, the mapped files, the names of
its environment variables (values only for the few that an expectation may name) and its TCP
sockets with their peers (from the network namespace's ``net/tcp``). This is the ground truth's
source; the analyzer is never asked.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

#: environment variables whose values the truth keeps (they name paths, never secrets)
KEPT_ENV_VALUES = frozenset({"LD_PRELOAD", "LD_AUDIT", "HISTFILE", "HISTSIZE", "PATH"})
#: what an fd of a terminal master reads as (in a container /dev/ptmx links to pts/ptmx)
PTY_MASTERS = frozenset({"/dev/ptmx", "/dev/pts/ptmx"})
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


@dataclass
class TcpSocket:
    fd: int
    local: str
    remote: str
    state: str


@dataclass
class Proc:
    pid: int  #: in the container's pid namespace
    ppid: int  #: 0 when the parent is outside the namespace
    host_pid: int
    comm: str
    argv: list[str]
    exe: str
    uid: int
    fds: dict[int, str] = field(default_factory=dict)
    maps: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    tcp: list[TcpSocket] = field(default_factory=list)
    #: indexes of the pseudo-terminals whose master (/dev/ptmx) this process holds
    pty_masters: set[int] = field(default_factory=set)

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "ppid": self.ppid,
            "comm": self.comm,
            "argv": self.argv,
            "exe": self.exe,
            "uid": self.uid,
            "fds": {str(k): v for k, v in sorted(self.fds.items())},
            "mappedFiles": self.maps,
            "env": self.env,
            "tcp": [vars(t) for t in self.tcp],
            "ptyMasters": sorted(self.pty_masters),
        }


def _addr(hexaddr: str) -> str:
    ip, port = hexaddr.split(":")
    if len(ip) == 8:
        host = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(ip, 16)))
    else:
        raw = bytes.fromhex(ip)
        words = b"".join(raw[i : i + 4][::-1] for i in (0, 4, 8, 12))
        host = socket.inet_ntop(socket.AF_INET6, words)
        if host.startswith("::ffff:"):
            host = host[7:]
    return f"{host}:{int(port, 16)}"


def parse_net_tcp(text: str) -> dict[str, tuple[str, str, str]]:
    """inode -> (local, remote, state) of one ``/proc/<pid>/net/tcp{,6}``."""
    out = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        out[parts[9]] = (_addr(parts[1]), _addr(parts[2]), TCP_STATES.get(parts[3], parts[3]))
    return out


def _read(path: Path) -> bytes:
    with contextlib.suppress(OSError):
        return path.read_bytes()
    return b""


def _status(proc: Path) -> dict[str, str]:
    fields = {}
    for line in _read(proc / "status").decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def namespace_members(host_pid: int, proc_root: Path = Path("/proc")) -> list[int]:
    """Host pids of every process in the pid namespace of ``host_pid``."""
    want = str((proc_root / str(host_pid) / "ns" / "pid").readlink())
    members = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if str((entry / "ns" / "pid").readlink()) == want:
                members.append(int(entry.name))
    return sorted(members)


def snapshot(init_host_pid: int, proc_root: Path = Path("/proc")) -> list[Proc]:
    """Every process of the container whose first process is ``init_host_pid``."""
    hosts = namespace_members(init_host_pid, proc_root)
    status = {h: _status(proc_root / str(h)) for h in hosts}
    inner = {h: int(status[h].get("NSpid", "0").split()[-1]) for h in hosts}
    tcp: dict[str, tuple[str, str, str]] = {}
    for name in ("tcp", "tcp6"):
        tcp.update(parse_net_tcp(_read(proc_root / str(init_host_pid) / "net" / name).decode()))
    procs = []
    for h in hosts:
        base = proc_root / str(h)
        st = status[h]
        argv = [a.decode(errors="replace") for a in _read(base / "cmdline").split(b"\0")]
        while argv and argv[-1] == "":
            argv.pop()
        exe = ""
        with contextlib.suppress(OSError):
            exe = str((base / "exe").readlink())
        p = Proc(
            pid=inner[h],
            ppid=inner.get(int(st.get("PPid", "0")), 0),
            host_pid=h,
            comm=_read(base / "comm").decode(errors="replace").strip(),
            argv=argv,
            exe=exe,
            uid=int(st.get("Uid", "0").split()[0]),
        )
        with contextlib.suppress(OSError):
            for link in sorted((base / "fd").iterdir(), key=lambda f: int(f.name)):
                with contextlib.suppress(OSError):
                    p.fds[int(link.name)] = str(link.readlink())
        maps = {line.split(None, 5)[5] for line in _read(base / "maps").decode().splitlines()
                if len(line.split(None, 5)) == 6}  # fmt: skip
        p.maps = sorted(m for m in maps if m.startswith("/") or m.startswith("memfd:"))
        for item in _read(base / "environ").split(b"\0"):
            name, sep, value = item.decode(errors="replace").partition("=")
            if sep:
                p.env[name] = value if name in KEPT_ENV_VALUES else ""
        for fd, target in p.fds.items():
            if target in PTY_MASTERS:
                info = _read(base / "fdinfo" / str(fd)).decode()
                index = [
                    line.split()[1] for line in info.splitlines() if line.startswith("tty-index:")
                ]
                p.pty_masters.update(int(i) for i in index)
            if target.startswith("socket:[") and (inode := target[8:-1]) in tcp:
                local, remote, state = tcp[inode]
                p.tcp.append(TcpSocket(fd, local, remote, state))
        procs.append(p)
    return sorted(procs, key=lambda p: p.pid)
