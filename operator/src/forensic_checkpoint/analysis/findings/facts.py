"""Subjects for the rules: flat dicts of facts drawn from the report and the CRIU images.

Every subject has ``_kind`` (the rule ``subject`` it answers) and ``_key`` (what makes its
finding id stable). Facts are computed once here so that the rules stay pure data.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forensic_checkpoint.analysis.format.criu_images import try_decode
from forensic_checkpoint.analysis.memory import Vma, parse_pagemap, vmas_from_mm
from forensic_checkpoint.analysis.memory.vmas import (
    PROT_EXEC,
    PROT_WRITE,
    VMA_ANON_PRIVATE,
    VMA_ANON_SHARED,
    VMA_AREA_MEMFD,
    VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL,
    VMA_AREA_VVAR,
    VMA_FILE_PRIVATE,
)
from forensic_checkpoint.analysis.model.report import OpenFile, Pipe, Process, Report, Socket
from forensic_checkpoint.errors import ImageError

Subject = dict[str, Any]

_SPECIAL = VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL
POOL_RE = re.compile(r"(?i)stratum[0-9]?\+(?:tcp|ssl|tls|ws)://[^\s'\"]+")
#: capabilities a CRI runtime grants by default (containerd/CRI-O/Docker default set)
DEFAULT_CAPS = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)


@dataclass
class Inputs:
    """What the findings see: the unredacted report, the small images, rootfs file heads."""

    report: Report
    images: Mapping[str, bytes] = field(default_factory=dict)
    #: absolute path -> first bytes of that rootfs-diff file (small files only)
    rootfs_files: Mapping[str, bytes] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)


def _basename(path: str | None) -> str:
    return posixpath.basename(path or "")


def socket_text(s: Socket) -> str:
    proto = s.protocol or s.family
    local = f"{s.local_address}:{s.local_port}"
    remote = f"{s.remote_address}:{s.remote_port}"
    return f"{proto} {local} -> {remote} {s.state or ''}".rstrip()


def _has_remote(s: Socket) -> bool:
    return s.family in ("inet", "inet6") and bool(s.remote_port) and s.state != "LISTEN"


def _queue_bytes(s: Socket) -> int:
    return sum(q.size_bytes for q in (s.receive_queue, s.send_queue) if q is not None)


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

    def listens(self, pid: int) -> bool:
        return any(
            s.state == "LISTEN" and s.family in ("inet", "inet6") and pid in _pids(s)
            for s in self.report.sockets
        )

    def stdio_link(self, pid: int) -> dict[str, Any] | None:
        """A remote peer reached by this process's fd 0/1/2: directly (a socket), through the
        other end of a pipe, or through the peer of a UNIX socket, held by a process that
        holds a connected socket."""
        direct: list[int] = []
        for fd in (0, 1, 2):
            item = self.fd(pid, fd)
            sock = self.socket_of(item) if item else None
            if item and sock and _has_remote(sock):
                direct.append(fd)
                last = sock
        if direct:
            holders = sorted({h.pid for h in last.held_by})
            return {
                "fds": direct,
                "remote": socket_text(last),
                "bytes": _queue_bytes(last),
                "holders": holders,
                "path": f"fd {','.join(map(str, direct))} = {last.protocol} socket",
            }
        for fd in (0, 1, 2):
            item = self.fd(pid, fd)
            pipe = self.pipe_of(item) if item else None
            if item is None or pipe is None:
                continue
            mine_reads = (item.flags or "").endswith("RDONLY")
            for holder in pipe.held_by:
                if holder.pid == pid:
                    continue
                other = self.fd(holder.pid, holder.fd)
                if other is None:
                    continue
                # only the opposite end of the pipe carries this shell's input or output
                if ((other.flags or "").endswith("RDONLY")) == mine_reads:
                    continue
                for sock in self.remote_sockets(holder.pid):
                    relay = self.procs[holder.pid]
                    arrow = "<-" if mine_reads else "->"
                    queued = _queue_bytes(sock) + (pipe.buffered.size_bytes if pipe.buffered else 0)
                    return {
                        "fds": [fd],
                        "remote": socket_text(sock),
                        "bytes": queued,
                        "holders": sorted({pid, holder.pid}),
                        "path": (
                            f"fd {fd} {arrow} pipe:[{pipe.id}] {arrow} pid {holder.pid} "
                            f"({relay.comm}) fd {holder.fd}, which holds {socket_text(sock)}"
                        ),
                    }
        return self._unix_relay(pid)

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
                if holder.pid == pid:
                    continue
                for sock in self.remote_sockets(holder.pid):
                    relay = self.procs[holder.pid]
                    return {
                        "fds": [fd],
                        "remote": socket_text(sock),
                        "bytes": _queue_bytes(sock) + _queue_bytes(mine) + _queue_bytes(peer),
                        "holders": sorted({pid, holder.pid}),
                        "path": (
                            f"fd {fd} = unix socket:[{mine.inode}] <-> socket:[{mine.peer_inode}]"
                            f" of pid {holder.pid} ({relay.comm}) fd {holder.fd}, which holds "
                            f"{socket_text(sock)}"
                        ),
                    }
        return None


def _pids(s: Socket) -> set[int]:
    return {h.pid for h in s.held_by} | ({s.pid} if s.pid is not None else set())


def _mm_entry(images: Mapping[str, bytes], pid: int) -> Any:
    image = try_decode("MM", images.get(f"checkpoint/mm-{pid}.img"), f"mm-{pid}.img", [])
    return image.entries[0] if image and image.entries else None


# --- processes ---------------------------------------------------------------------------


def process_subjects(inp: Inputs, lists: Mapping[str, list[str]]) -> list[Subject]:
    report = inp.report
    graph = Graph(report)
    shells = set(lists.get("shell_binaries", []))
    servers = set(lists.get("server_binaries", []))
    changed = {e.path: e for e in report.rootfs.changed}
    memfds = {o.name: o for o in report.shared_memory if o.kind == "memfd"}

    def is_shell(p: Process) -> bool:
        return p.comm in shells or _basename(p.exe) in shells

    def is_server(p: Process) -> bool:
        return graph.listens(p.pid) or p.comm in servers or _basename(p.exe) in servers

    history: dict[int, list[str]] = {}
    for h in report.shell_history:
        history.setdefault(h.pid, []).append(f"{h.time or '?'} {h.command}")
    children: dict[int, list[Process]] = {}
    for p in report.processes:
        children.setdefault(p.ppid, []).append(p)

    def ancestors(p: Process) -> list[Process]:
        out, seen = [], {p.pid}
        cur = graph.procs.get(p.ppid)
        while cur is not None and cur.pid not in seen:
            out.append(cur)
            seen.add(cur.pid)
            cur = graph.procs.get(cur.ppid)
        return out

    def shell_subtree(p: Process) -> list[Process]:
        out = [p]
        for child in children.get(p.pid, []):
            if is_shell(child):
                out.extend(shell_subtree(child))
        return out

    subjects = []
    for p in report.processes:
        up = ancestors(p)
        server = next((a for a in up if is_server(a)), None)
        link = graph.stdio_link(p.pid)
        exe = p.exe or ""
        memfd = exe.startswith(("memfd:", "/memfd:"))
        entry = changed.get(exe)
        argv = " ".join(p.cmdline)
        pool = POOL_RE.search(argv)
        subtree = shell_subtree(p) if is_shell(p) else [p]
        deepest = next((s for s in reversed(subtree) if graph.stdio_link(s.pid)), subtree[-1])
        chain = [deepest, *[a for a in ancestors(deepest) if server and a.pid >= 0]]
        chain = chain[: chain.index(server) + 1] if server in chain else chain
        obj = memfds.get(exe.lstrip("/").removesuffix(" (deleted)")) if memfd else None
        remotes = graph.remote_sockets(p.pid)
        miner_ports = {int(x) for x in lists.get("miner_ports", [])}
        miner = next((s for s in remotes if s.remote_port in miner_ports), None)
        env = {e.name: e.value for e in p.env}
        api_hosts = {env.get("KUBERNETES_SERVICE_HOST"), "kubernetes.default.svc"} - {None}
        api = next((s for s in remotes if s.remote_address in api_hosts), None)
        metadata = next(
            (s for s in remotes if s.remote_address in lists.get("metadata_addresses", [])), None
        )
        subjects.append(
            {
                "_kind": "process",
                "_key": f"pid={p.pid}",
                "pid": p.pid,
                "ppid": p.ppid,
                "comm": p.comm,
                "exe": exe,
                "exe_basename": _basename(exe),
                "argv": argv,
                "argv0": p.cmdline[0] if p.cmdline else "",
                "is_shell": is_shell(p),
                "parent_is_shell": bool(up) and is_shell(up[0]),
                "listens": graph.listens(p.pid),
                "server_ancestor": f"pid {server.pid} ({server.comm})" if server else None,
                "deepest_shell": deepest.pid,
                "shell_chain": sorted({s.pid for s in subtree} | {c.pid for c in chain}),
                "chain_text": " <- ".join(
                    f"{c.pid} {' '.join(c.cmdline) or c.comm}"[:120] for c in chain
                ),
                "stdio_remote": link["remote"] if link else None,
                "stdio_fds": link["fds"] if link else [],
                "stdio_queue_bytes": link["bytes"] if link else None,
                "stdio_holders": link["holders"] if link else [],
                "stdio_path": link["path"] if link else None,
                "exe_memfd": memfd,
                "memfd_fds": [int(f.fd) for f in p.open_files if f.type == "MEMFD"],
                "exe_deleted": exe.endswith(" (deleted)")
                or exe in report.rootfs.deleted
                or any(f.deleted and f.path == exe for f in p.open_files),
                "exe_in_rootfs_diff": entry is not None and entry.type == "file",
                "exe_sha256": entry.sha256 if entry else (obj.sha256 if obj else None),
                "exe_size": entry.size_bytes if entry else (obj.size_bytes if obj else None),
                "exe_hidden": any(part.startswith(".") for part in exe.split("/") if part),
                "pool_url": pool.group(0) if pool else None,
                "miner_port_connection": socket_text(miner) if miner else None,
                "api_server_connection": socket_text(api) if api else None,
                "metadata_connection": socket_text(metadata) if metadata else None,
                "packet_sockets": [int(f.fd) for f in p.open_files if f.type == "PACKETSK"],
                "history_count": len(history.get(p.pid, [])),
                "history_first": history[p.pid][0][:200] if p.pid in history else None,
                "history_last": history[p.pid][-1][:200] if p.pid in history else None,
                "argv_address": _argv_address(inp, p, pool.start() if pool else None),
            }
        )
    return subjects


def _argv_address(inp: Inputs, p: Process, offset: int | None) -> str | None:
    """Virtual address of ``offset`` in the space-joined argv (NUL-joined in memory)."""
    if offset is None:
        return None
    mm = _mm_entry(inp.images, p.pid)
    return f"0x{int(mm.mm_arg_start) + offset:x}" if mm is not None else None


# --- environment ---------------------------------------------------------------------------


def env_subjects(inp: Inputs) -> list[Subject]:
    report = inp.report
    mapped = {m.name for p in report.processes for m in p.maps}
    changed = {e.path: e for e in report.rootfs.changed}
    out = []
    for p in report.processes:
        for var in p.env:
            entry = changed.get(var.value)
            out.append(
                {
                    "_kind": "env",
                    "_key": f"pid={p.pid},name={var.name}",
                    "pid": p.pid,
                    "comm": p.comm,
                    "name": var.name,
                    "value": var.value,
                    "assignment": f"{var.name}={var.value}",
                    "value_mapped": "yes" if var.value in mapped else "no",
                    "value_in_rootfs_diff": f"yes, {entry.size_bytes} bytes" if entry else "no",
                }
            )
    return out


# --- rootfs-diff --------------------------------------------------------------------------


def _excerpt(data: bytes | None, limit: int = 300) -> str | None:
    if data is None:
        return None
    text = data[:limit].decode("utf-8", "replace")
    return text + ("..." if len(data) > limit else "")


def file_subjects(inp: Inputs) -> list[Subject]:
    report = inp.report
    mountpoints = {m.mountpoint for m in report.mounts}
    executed = {p.exe for p in report.processes} | {
        m.name for p in report.processes for m in p.maps if "x" in m.perms
    }
    out = []
    for e in report.rootfs.changed:
        mode = int(e.mode, 8) if e.mode else 0
        out.append(
            {
                "_kind": "file",
                "_key": f"path={e.path}",
                "path": e.path,
                "basename": _basename(e.path),
                "type": e.type,
                "mode": e.mode,
                "size": e.size_bytes,
                "sha256": e.sha256,
                "mtime": e.mtime,
                "link_target": e.link_target,
                "executable": e.type == "file" and bool(mode & 0o111),
                "setuid": e.type == "file" and bool(mode & 0o6000),
                "mountpoint": e.path in mountpoints,
                "executed": e.path in executed,
                "cleared": (e.type == "file" and e.size_bytes == 0)
                or (e.type == "symlink" and e.link_target == "/dev/null"),
                "excerpt": _excerpt(inp.rootfs_files.get(e.path)),
                "rule_group": "package-db",
            }
        )
    for path in report.rootfs.deleted:
        out.append(
            {
                "_kind": "file",
                "_key": f"path={path}",
                "path": path,
                "basename": _basename(path),
                "type": "deleted",
                "mountpoint": path in mountpoints,
                "executed": False,
                "executable": False,
                "setuid": False,
                "cleared": True,
                "rule_group": "package-db",
            }
        )
    return out


# --- memory mappings ------------------------------------------------------------------------


def _dumped(entries: Iterable[Any], start: int, end: int, page: int) -> list[tuple[int, int]]:
    """Present pagemap runs clipped to [start, end)."""
    out = []
    for e in entries:
        lo, hi = e.vaddr, e.vaddr + e.nr_pages * page
        if e.present and lo < end and hi > start:
            out.append((max(lo, start), min(hi, end)))
    return out


def mapping_subjects(inp: Inputs) -> list[Subject]:
    report = inp.report
    page = report.memory.page_size or 4096
    out = []
    for p in report.processes:
        mm_blob = inp.images.get(f"checkpoint/mm-{p.pid}.img")
        pm_blob = inp.images.get(f"checkpoint/pagemap-{p.pid}.img")
        if mm_blob is None or pm_blob is None:
            continue
        try:
            vmas = vmas_from_mm(mm_blob)
            entries = parse_pagemap(pm_blob).entries
        except ImageError:
            continue
        names = {int(m.start, 16): m for m in p.maps}
        written = {e.path for e in report.rootfs.changed if e.type == "file"}
        # compel runs the parasite's first syscalls by writing them at the start of the first
        # executable VMA in /proc/PID/maps order (compel/src/lib/infect.c,
        # find_executable_area) and restoring the bytes after; that page is then a COW copy
        # that CRIU dumps. It is not evidence.
        patched = next((v.start for v in vmas if v.prot & PROT_EXEC), None)
        for v in vmas:
            out.append(
                _mapping(p, v, names=names, entries=entries, page=page, patched=patched)
                | {
                    "backing_in_rootfs_diff": (names[v.start].name if v.start in names else "")
                    in written
                }
            )
    return out


def _mapping(
    p: Process,
    v: Vma,
    *,
    names: Mapping[int, Any],
    entries: Iterable[Any],
    page: int,
    patched: int | None,
) -> Subject:
    area = names.get(v.start)
    name = area.name if area is not None else v.description
    perms = area.perms if area is not None else "?"
    runs = _dumped(entries, v.start, v.end, page)
    modified = [(lo, hi) for lo, hi in runs]
    if v.start == patched and modified and modified[0][0] == v.start:
        lo, hi = modified[0]
        modified[0] = (lo + page, hi)
        modified = [(lo, hi) for lo, hi in modified if hi > lo]
    memfd = bool(v.status & VMA_AREA_MEMFD)
    return {
        "_kind": "mapping",
        "_key": f"pid={p.pid},start=0x{v.start:x}",
        "pid": p.pid,
        "comm": p.comm,
        "exe_basename": _basename(p.exe),
        "start": f"0x{v.start:x}",
        "mapping": f"0x{v.start:x}-0x{v.end:x} {perms} {name}",
        "backing": name,
        "prot_write": bool(v.prot & PROT_WRITE),
        "prot_exec": bool(v.prot & PROT_EXEC),
        "special": bool(v.status & _SPECIAL),
        "anonymous": bool(v.status & (VMA_ANON_PRIVATE | VMA_ANON_SHARED)) and not memfd,
        "file_private": bool(v.status & VMA_FILE_PRIVATE) and not memfd,
        "memfd": memfd,
        "exe_mapping": name.lstrip("/") == (p.exe or "").lstrip("/"),
        "dumped_bytes": sum(hi - lo for lo, hi in runs),
        "modified_pages": sum(hi - lo for lo, hi in modified) // page,
        "modified_bytes": sum(hi - lo for lo, hi in modified),
        "first_modified": f"0x{modified[0][0]:x}" if modified else None,
    }


# --- spec.dump ---------------------------------------------------------------------------


def mount_subjects(inp: Inputs) -> list[Subject]:
    out = []
    for m in inp.spec.get("mounts") or []:
        if not isinstance(m, dict):
            continue
        options = [str(o) for o in m.get("options") or []]
        source = str(m.get("source") or "")
        out.append(
            {
                "_kind": "mount",
                "_key": f"destination={m.get('destination')}",
                "destination": str(m.get("destination") or ""),
                "source": source.rstrip("/") or "/",
                "type": str(m.get("type") or ""),
                "options": ",".join(options),
                "bind": m.get("type") == "bind" or "bind" in options or "rbind" in options,
            }
        )
    return out


def container_subjects(inp: Inputs, lists: Mapping[str, list[str]]) -> list[Subject]:
    spec = inp.spec
    if not spec:
        return []
    process = spec.get("process") or {}
    linux = spec.get("linux") or {}
    caps = process.get("capabilities") or {}
    granted = set(caps.get("bounding") or []) | set(caps.get("effective") or [])
    added = sorted(granted - DEFAULT_CAPS)
    dangerous = sorted(set(added) & set(lists.get("dangerous_caps", [])))
    namespaces = {n.get("type") for n in linux.get("namespaces") or [] if isinstance(n, dict)}
    signs = []
    if "CAP_SYS_ADMIN" in granted and len(granted) >= 35:
        signs.append(f"all capabilities ({len(granted)})")
    for ns in ("pid", "network", "ipc"):
        if "namespaces" in linux and ns not in namespaces:
            signs.append(f"host {ns} namespace")
    if process.get("apparmorProfile") == "unconfined":
        signs.append("AppArmor unconfined")
    return [
        {
            "_kind": "container",
            "_key": "container",
            "added_caps": ", ".join(added) or None,
            "dangerous_added_caps": ", ".join(dangerous) or None,
            "privileged_signs": ", ".join(signs) or None,
        }
    ]


# --- container log ------------------------------------------------------------------------

_CRI_LINE = re.compile(r"^(\S+) (stdout|stderr) [FP] ?(.*)$")


def log_subjects(inp: Inputs) -> list[Subject]:
    """One subject per CRI log line in the kept tail, with the URL-decoded text (web
    servers log request lines percent-encoded)."""
    from urllib.parse import unquote_plus

    log = inp.report.log
    if log is None:
        return []
    out = []
    for n, line in enumerate(log.content.splitlines()):
        m = _CRI_LINE.match(line)
        text = m.group(3) if m else line
        out.append(
            {
                "_kind": "logline",
                "_key": f"line={n}",
                "time": m.group(1) if m else None,
                "stream": m.group(2) if m else None,
                "text": text[:2000],
                "decoded": unquote_plus(text)[:2000],
                "member": log.member,
            }
        )
    return out
