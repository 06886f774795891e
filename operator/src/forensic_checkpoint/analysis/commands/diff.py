"""Comparing two checkpoints: processes, open files, sockets, rootfs changes and memory size.

Items are compared by stable keys rather than by position: processes by PID (a PID reused by
another program shows as changed), open files by (pid, fd), sockets by their endpoints, rootfs
entries by path. Unlike checkpointctl's diff, env and queue contents are not compared (they are
masked by default anyway) and memory is compared per process by dumped bytes.
"""

from __future__ import annotations

from forensic_checkpoint.analysis.model.diff import (
    Changes,
    DiffReport,
    DiffSide,
    MemoryChange,
    ProcessMemoryChange,
)
from forensic_checkpoint.analysis.model.process import Process
from forensic_checkpoint.analysis.model.report import Report, Socket


def _proc_line(p: Process) -> str:
    return f"{p.pid} {p.comm}: {' '.join(p.cmdline) or p.comm}"


def _sock_key(s: Socket) -> str:
    if s.family.startswith("inet"):
        local = f"{s.local_address}:{s.local_port}"
        remote = f"{s.remote_address}:{s.remote_port}"
        return f"{s.protocol or s.family} {local} -> {remote}"
    return f"{s.family} {s.type} {s.local_address or ''} inode {s.inode}"


def _changes(a: dict[str, str], b: dict[str, str]) -> Changes:
    """a/b map key -> description; a key in both with different descriptions is changed."""
    return Changes(
        added=[b[k] for k in sorted(b.keys() - a.keys())],
        removed=[a[k] for k in sorted(a.keys() - b.keys())],
        changed=[f"{a[k]}  =>  {b[k]}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]],
    )


def diff_reports(a: Report, b: Report) -> DiffReport:
    procs_a = {
        str(p.pid): _proc_line(p) + f" [{p.state}, {len(p.threads)} threads]" for p in a.processes
    }
    procs_b = {
        str(p.pid): _proc_line(p) + f" [{p.state}, {len(p.threads)} threads]" for p in b.processes
    }

    def files(r: Report) -> dict[str, str]:
        return {
            f"{p.pid}:{f.fd}": f"pid {p.pid} fd {f.fd} {f.type} {f.path}"
            + (" (deleted)" if f.deleted else "")
            for p in r.processes
            for f in p.open_files
        }

    def sockets(r: Report) -> dict[str, str]:
        out = {}
        for s in r.sockets:
            holders = ",".join(f"{h.pid}/{h.fd}" for h in s.held_by)
            out[_sock_key(s)] = f"{_sock_key(s)} {s.state or ''} held by {holders or '-'}"
        return out

    def rootfs(r: Report) -> dict[str, str]:
        out = {
            e.path: f"{e.path} {e.type} {e.size_bytes} B {e.mode} {e.sha256 or ''}".rstrip()
            for e in r.rootfs.changed
        }
        out.update({f"deleted:{p}": f"{p} deleted" for p in r.rootfs.deleted})
        return out

    def findings(r: Report) -> dict[str, str]:
        return {f.id: f"{f.severity.upper()} {f.title} ({f.id})" for f in r.findings}

    rss_a = {p.pid: p.rss_bytes for p in a.processes}
    rss_b = {p.pid: p.rss_bytes for p in b.processes}
    per_pid = [
        ProcessMemoryChange(
            pid=pid,
            a_bytes=rss_a.get(pid, 0),
            b_bytes=rss_b.get(pid, 0),
            delta_bytes=rss_b.get(pid, 0) - rss_a.get(pid, 0),
        )
        for pid in sorted(rss_a.keys() | rss_b.keys())
    ]
    return DiffReport(
        a=DiffSide(
            path=a.archive.path,
            sha256=a.archive.sha256,
            container_id=a.container.id,
            checkpointed_at=a.container.checkpointed_at,
        ),
        b=DiffSide(
            path=b.archive.path,
            sha256=b.archive.sha256,
            container_id=b.container.id,
            checkpointed_at=b.container.checkpointed_at,
        ),
        same_container=a.container.id is not None and a.container.id == b.container.id,
        processes=_changes(procs_a, procs_b),
        files=_changes(files(a), files(b)),
        sockets=_changes(sockets(a), sockets(b)),
        rootfs=_changes(rootfs(a), rootfs(b)),
        findings=_changes(findings(a), findings(b)),
        memory=MemoryChange(
            a_bytes=a.memory.dumped_bytes,
            b_bytes=b.memory.dumped_bytes,
            delta_bytes=b.memory.dumped_bytes - a.memory.dumped_bytes,
            processes=per_pid,
        ),
    )
