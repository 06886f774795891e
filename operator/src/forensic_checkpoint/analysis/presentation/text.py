"""Human output: rich tables, one section per part of the report.

The whole report is rendered; the only things summarised are memory maps (areas with
resident pages, the rest counted) and long queue/log contents (cut with a marker), because
JSON carries them in full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console

from forensic_checkpoint.analysis.presentation.rich_tables import (
    human_size,
    key_values,
    new_console,
    new_table,
    queue_text,
)
from forensic_checkpoint.analysis.presentation.style import PLAIN, TextStyle
from forensic_checkpoint.analysis.presentation.text_diff import render_diff, render_list
from forensic_checkpoint.analysis.presentation.text_processes import (
    render_process_tree,
    render_processes,
)

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.model.report import Report, Socket


def render(report: Any, style: TextStyle = PLAIN) -> str:
    from forensic_checkpoint.analysis.model.diff import DiffReport
    from forensic_checkpoint.analysis.model.listing import CheckpointList

    if isinstance(report, DiffReport):
        return render_diff(report, style)
    if isinstance(report, CheckpointList):
        return render_list(report, style)
    return render_report(report, style)


def render_report(report: Report, style: TextStyle = PLAIN) -> str:
    console, buf = new_console(style)
    c, a = report.container, report.archive
    console.print(
        key_values(
            "Container",
            [
                ("engine", a.engine),
                ("name", c.name),
                ("engine name", c.config_name if c.config_name != c.name else None),
                ("id", c.id),
                ("pod", c.pod),
                ("namespace", c.namespace),
                ("pod uid", c.pod_uid),
                ("image", c.image),
                ("image id", c.image_id),
                ("runtime", c.runtime),
                ("hostname", c.hostname),
                ("ip", c.ip),
                ("host pid", c.host_pid),
                ("log path (node)", c.log_path),
                ("created", c.created_at),
                ("checkpointed", c.checkpointed_at),
                ("command", " ".join(c.args)),
                ("cwd", c.cwd),
            ],
        )
    )
    console.print(
        key_values(
            "Archive",
            [
                ("path", a.path),
                ("sha256", a.sha256),
                ("size", f"{human_size(a.size_bytes)} ({a.compression})"),
                ("members", a.member_count),
                ("checkpoint size", human_size(a.checkpoint_size_bytes)),
                ("memory pages", human_size(a.memory_pages_size_bytes)),
                ("rootfs diff", human_size(a.rootfs_diff_size_bytes)),
            ],
        )
    )
    _findings(console, report)
    render_process_tree(console, report)
    render_processes(console, report.processes)
    _sockets(console, report)
    _rootfs(console, report)
    _memory(console, report)
    _misc(console, report)
    if report.redacted:
        console.print("Secret values are masked; use --reveal to show them.")
    return buf.getvalue()


def _findings(console: Console, report: Report) -> None:
    findings = getattr(report, "findings", [])
    if not findings:
        return
    table = new_table(f"Findings ({len(findings)})", "severity", "finding", "evidence", "ATT&CK")
    for f in findings:
        e = f.evidence
        where = [
            f"pid {e.pid}" if e.pid is not None else "",
            f"fd {','.join(map(str, e.fd))}" if e.fd else "",
            e.path or "",
            e.socket or "",
            e.mapping or "",
            f"at {e.address}" if e.address else "",
            f"sha256 {e.sha256[:16]}…" if e.sha256 else "",
        ]
        table.add_row(
            f.severity.upper(),
            f.title,
            "; ".join(w for w in where if w),
            " ".join(f.attack),
        )
    console.print(table)


def _sockets(console: Console, report: Report) -> None:
    if report.sockets:
        table = new_table(
            "Sockets",
            "pid/fd",
            "family",
            "type",
            "state",
            "local",
            "remote",
            "recv queue",
            "send queue",
        )
        for s in report.sockets:
            holders = ", ".join(f"{h.pid}/{h.fd}" for h in s.held_by) or "-"
            local, remote = _endpoints(s)
            kind = f"{s.type}/{s.protocol}" if s.protocol else s.type
            table.add_row(
                holders,
                s.family,
                kind,
                s.state or "",
                local,
                remote,
                queue_text(s.receive_queue),
                queue_text(s.send_queue),
            )
        console.print(table)
    _pipes(console, report)


def _pipes(console: Console, report: Report) -> None:
    if report.pipes:
        table = new_table("Pipes", "inode", "type", "held by (pid/fd)", "buffered")
        for pipe in report.pipes:
            holders = ", ".join(f"{h.pid}/{h.fd}" for h in pipe.held_by)
            table.add_row(str(pipe.id), pipe.type, holders, queue_text(pipe.buffered))
        console.print(table)


def _endpoints(s: Socket) -> tuple[str, str]:
    """(local, remote) as the sockets table shows them: address:port, or a UNIX peer."""
    local = s.local_address or ""
    if s.local_port is not None and s.family.startswith("inet"):
        local = f"{local}:{s.local_port}"
    remote = ""
    if s.remote_address is not None and s.family.startswith("inet"):
        remote = f"{s.remote_address}:{s.remote_port}"
    elif s.peer_inode:
        remote = f"peer inode {s.peer_inode}"
    return local, remote


def _rootfs(console: Console, report: Report) -> None:
    r = report.rootfs
    if r.changed:
        table = new_table(
            f"Changed files (rootfs-diff.tar, {r.format})", "path", "type", "size", "mode", "sha256"
        )
        for e in r.changed:
            target = f" -> {e.link_target}" if e.link_target else ""
            table.add_row(e.path + target, e.type, str(e.size_bytes), e.mode, e.sha256 or "")
        console.print(table)
    if r.deleted:
        console.print(
            key_values(f"Deleted files ({r.deleted_source})", [("paths", "\n".join(r.deleted))])
        )
    if r.mount_stubs:
        stubs = "\n".join(e.path for e in r.mount_stubs)
        console.print(key_values("Mount stubs (empty, made by the runtime)", [("paths", stubs)]))


def _memory(console: Console, report: Report) -> None:
    for s in report.memory.searches:
        more = f", showing {len(s.matches)}" if s.truncated else ""
        table = new_table(
            f"Memory search {s.kind} {s.pattern!r}: {s.total_matches} matches{more}",
            "pid",
            "address",
            "mapping",
            "context",
        )
        for m in s.matches:
            table.add_row(str(m.pid), m.address, m.where(), m.context)
        console.print(table)


def _misc(console: Console, report: Report) -> None:
    _shared_memory(console, report)
    _namespaces_and_mounts(console, report)
    _dump(console, report)
    if report.bind_mounts:
        console.print(key_values("bind.mounts", [("entries", report.bind_mounts)]))
    if report.network_status:
        console.print(key_values("network.status", [("content", report.network_status)]))
    if report.warnings:
        console.print(
            key_values("Warnings", [(str(i + 1), w) for i, w in enumerate(report.warnings)])
        )


def _shared_memory(console: Console, report: Report) -> None:
    if report.shared_memory:
        table = new_table(
            "Shared memory objects", "shmid", "kind", "name", "size", "dumped", "sha256", "used by"
        )
        for o in report.shared_memory:
            table.add_row(
                str(o.shmid),
                o.kind,
                o.name or "",
                human_size(o.size_bytes),
                human_size(o.dumped_bytes),
                o.sha256 or "",
                ", ".join(o.used_by),
            )
        console.print(table)


def _namespaces_and_mounts(console: Console, report: Report) -> None:
    if report.namespaces:
        table = new_table("Namespaces", "type", "id", "details")
        for ns in report.namespaces:
            details = ", ".join(f"{k}={v}" for k, v in ns.details.items())
            table.add_row(ns.type, str(ns.id), details)
        console.print(table)
    if report.mounts:
        table = new_table("Mounts", "origin", "mountpoint", "type", "source", "options")
        for m in report.mounts:
            table.add_row(m.origin, m.mountpoint, m.fstype or "", m.source or "", m.options or "")
        console.print(table)


def _dump(console: Console, report: Report) -> None:
    """CRIU's statistics and log, and the container's log."""
    if report.dump_stats:
        stats = {k: v for k, v in vars(report.dump_stats).items() if v is not None}
        console.print(key_values("CRIU dump statistics (times in µs)", list(stats.items())))
    if report.log:
        cut = " (last part)" if report.log.truncated else ""
        console.print(
            key_values(
                f"Container log: {report.log.member}{cut}",
                [("content", report.log.content.rstrip("\n")[-4000:])],
            )
        )
    if report.dump_log:
        d = report.dump_log
        console.print(
            key_values(
                "CRIU dump.log",
                [
                    ("criu", d.criu_version),
                    ("result", "finished successfully" if d.succeeded else "NOT finished"),
                    ("errors / warnings", "\n".join(d.problems)),
                ],
            )
        )
