"""Process subjects for the rules: a process, its shell ancestry, where its stdio leads, its
executable, its connections and its shell history, as one flat dict of facts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from forensic_checkpoint.analysis.findings.connections import Graph, socket_text
from forensic_checkpoint.analysis.findings.facts import Inputs, Subject, basename
from forensic_checkpoint.analysis.format.criu_images import try_decode
from forensic_checkpoint.analysis.model.process import Process
from forensic_checkpoint.analysis.model.report import Socket

POOL_RE = re.compile(r"(?i)stratum[0-9]?\+(?:tcp|ssl|tls|ws)://[^\s'\"]+")


def _text(s: Socket | None) -> str | None:
    return socket_text(s) if s else None


def _mm_entry(images: Mapping[str, bytes], pid: int) -> Any:
    image = try_decode("MM", images.get(f"checkpoint/mm-{pid}.img"), f"mm-{pid}.img", [])
    return image.entries[0] if image and image.entries else None


def _argv_address(inp: Inputs, p: Process, offset: int | None) -> str | None:
    """Virtual address of ``offset`` in the space-joined argv (NUL-joined in memory)."""
    if offset is None:
        return None
    mm = _mm_entry(inp.images, p.pid)
    return f"0x{int(mm.mm_arg_start) + offset:x}" if mm is not None else None


class _ProcessFacts:
    """What every process subject is computed from: the graph, the lists, the tree."""

    def __init__(self, inp: Inputs, lists: Mapping[str, list[str]]) -> None:
        report = inp.report
        self.inp = inp
        self.report = report
        self.graph = Graph(report)
        self.shells = set(lists.get("shell_binaries", []))
        self.servers = set(lists.get("server_binaries", []))
        self.miner_ports = {int(x) for x in lists.get("miner_ports", [])}
        self.metadata_addresses = lists.get("metadata_addresses", [])
        self.changed = {e.path: e for e in report.rootfs.changed}
        self.memfds = {o.name: o for o in report.shared_memory if o.kind == "memfd"}
        self.history: dict[int, list[str]] = {}
        for h in report.shell_history:
            self.history.setdefault(h.pid, []).append(f"{h.time or '?'} {h.command}")
        self.children: dict[int, list[Process]] = {}
        for p in report.processes:
            self.children.setdefault(p.ppid, []).append(p)

    def is_shell(self, p: Process) -> bool:
        return p.comm in self.shells or basename(p.exe) in self.shells

    def is_server(self, p: Process) -> bool:
        return (
            self.graph.listens(p.pid) or p.comm in self.servers or basename(p.exe) in self.servers
        )

    def ancestors(self, p: Process) -> list[Process]:
        out, seen = [], {p.pid}
        cur = self.graph.procs.get(p.ppid)
        while cur is not None and cur.pid not in seen:
            out.append(cur)
            seen.add(cur.pid)
            cur = self.graph.procs.get(cur.ppid)
        return out

    def shell_subtree(self, p: Process) -> list[Process]:
        out = [p]
        for child in self.children.get(p.pid, []):
            if self.is_shell(child):
                out.extend(self.shell_subtree(child))
        return out

    def subject(self, p: Process) -> Subject:
        exe = p.exe or ""
        argv = " ".join(p.cmdline)
        pool = POOL_RE.search(argv)
        return {
            "_kind": "process",
            "_key": f"pid={p.pid}",
            "pid": p.pid,
            "ppid": p.ppid,
            "comm": p.comm,
            "exe": exe,
            "exe_basename": basename(exe),
            "argv": argv,
            "argv0": p.cmdline[0] if p.cmdline else "",
            **self._shell(p),
            **self._executable(p, exe),
            "pool_url": pool.group(0) if pool else None,
            **self._connections(p),
            **self._history(p),
            "argv_address": _argv_address(self.inp, p, pool.start() if pool else None),
        }

    def _shell(self, p: Process) -> Subject:
        """The shell chain up to the nearest server ancestor, and where its stdio leads."""
        up = self.ancestors(p)
        server = next((a for a in up if self.is_server(a)), None)
        link = self.graph.stdio_link(p.pid, through_pipes=self.is_shell(p)) or {}
        subtree, deepest, chain = self._chain(p, server)
        return {
            "is_shell": self.is_shell(p),
            "parent_is_shell": bool(up) and self.is_shell(up[0]),
            "listens": self.graph.listens(p.pid),
            "server_ancestor": f"pid {server.pid} ({server.comm})" if server else None,
            "deepest_shell": deepest.pid,
            "shell_chain": sorted({s.pid for s in subtree} | {c.pid for c in chain}),
            "chain_text": " <- ".join(
                f"{c.pid} {' '.join(c.cmdline) or c.comm}"[:120] for c in chain
            ),
            "stdio_remote": link.get("remote"),
            "stdio_fds": link.get("fds", []),
            "stdio_queue_bytes": link.get("bytes"),
            "stdio_holders": link.get("holders", []),
            "stdio_path": link.get("path"),
            "stdio_direction": link.get("direction"),
        }

    def _chain(
        self, p: Process, server: Process | None
    ) -> tuple[list[Process], Process, list[Process]]:
        """p's shell subtree, its deepest shell with a stdio link, and that shell's ancestors
        up to the server."""
        subtree = self.shell_subtree(p) if self.is_shell(p) else [p]
        deepest = next((s for s in reversed(subtree) if self.graph.stdio_link(s.pid)), subtree[-1])
        chain = [deepest, *[a for a in self.ancestors(deepest) if server and a.pid >= 0]]
        chain = chain[: chain.index(server) + 1] if server in chain else chain
        return subtree, deepest, chain

    def _executable(self, p: Process, exe: str) -> Subject:
        """Where the executable came from: a memfd, a deleted file, the rootfs diff."""
        memfd = exe.startswith(("memfd:", "/memfd:"))
        entry = self.changed.get(exe)
        obj = self.memfds.get(exe.lstrip("/").removesuffix(" (deleted)")) if memfd else None
        origin = entry or obj
        return {
            "exe_memfd": memfd,
            "memfd_fds": [int(f.fd) for f in p.open_files if f.type == "MEMFD"],
            "exe_deleted": exe.endswith(" (deleted)")
            or exe in self.report.rootfs.deleted
            or any(f.deleted and f.path == exe for f in p.open_files),
            "exe_in_rootfs_diff": entry is not None and entry.type == "file",
            "exe_sha256": origin.sha256 if origin else None,
            "exe_size": origin.size_bytes if origin else None,
            "exe_hidden": any(part.startswith(".") for part in exe.split("/") if part),
        }

    def _connections(self, p: Process) -> Subject:
        """Connections to mining pools, the API server and cloud metadata; packet sockets."""
        remotes = self.graph.remote_sockets(p.pid)
        env = {e.name: e.value for e in p.env}
        api_hosts = {env.get("KUBERNETES_SERVICE_HOST"), "kubernetes.default.svc"} - {None}
        miner = next((s for s in remotes if s.remote_port in self.miner_ports), None)
        api = next((s for s in remotes if s.remote_address in api_hosts), None)
        metadata = next((s for s in remotes if s.remote_address in self.metadata_addresses), None)
        return {
            "miner_port_connection": _text(miner),
            "api_server_connection": _text(api),
            "metadata_connection": _text(metadata),
            "packet_sockets": [int(f.fd) for f in p.open_files if f.type == "PACKETSK"],
        }

    def _history(self, p: Process) -> Subject:
        lines = self.history.get(p.pid, [])
        return {
            "history_count": len(lines),
            "history_first": lines[0][:200] if lines else None,
            "history_last": lines[-1][:200] if lines else None,
        }


def process_subjects(inp: Inputs, lists: Mapping[str, list[str]]) -> list[Subject]:
    facts = _ProcessFacts(inp, lists)
    return [facts.subject(p) for p in inp.report.processes]
