"""Human output: rich tables, one section per part of the report.

The whole report is rendered; the only things summarised are memory maps (areas with
resident pages, the rest counted) and long queue/log contents (cut with a marker), because
JSON carries them in full.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.model.diff import DiffReport
    from forensic_checkpoint.analysis.model.listing import CheckpointList
    from forensic_checkpoint.analysis.model.report import Process, QueueData, Report

_WIDTH = 140
_SNIPPET = 200


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


def _snippet(text: str, limit: int = _SNIPPET) -> str:
    flat = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _queue(q: QueueData | None) -> str:
    if q is None or q.size_bytes == 0:
        return ""
    return f"{q.size_bytes} B: {_snippet(q.text, 60)}"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    return table


def _kv(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_header=False)
    table.add_column("field", style="cyan", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in rows:
        if value not in (None, "", [], {}):
            table.add_row(key, str(value))
    return table


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(
        file=buf,
        width=_WIDTH,
        no_color=True,
        highlight=False,
        soft_wrap=False,
        markup=False,
        emoji=False,
    ), buf


def render(report: Any) -> str:
    from forensic_checkpoint.analysis.model.diff import DiffReport
    from forensic_checkpoint.analysis.model.listing import CheckpointList

    if isinstance(report, DiffReport):
        return render_diff(report)
    if isinstance(report, CheckpointList):
        return render_list(report)
    return render_report(report)


def render_list(listing: CheckpointList) -> str:
    console, buf = _console()
    table = _table(
        "Checkpoints", "namespace", "pod", "container", "engine", "checkpointed", "size", "path"
    )
    for c in listing.checkpoints:
        if c.error:
            table.add_row("", "", "", "", f"error: {c.error}", _size(c.size_bytes), c.path)
        else:
            table.add_row(
                c.namespace or "-",
                c.pod or "-",
                c.container or "-",
                c.engine or "-",
                c.checkpointed_at or "-",
                _size(c.size_bytes),
                c.path,
            )
    console.print(table)
    return buf.getvalue()


def render_report(report: Report) -> str:
    console, buf = _console()
    c, a = report.container, report.archive
    console.print(
        _kv(
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
        _kv(
            "Archive",
            [
                ("path", a.path),
                ("sha256", a.sha256),
                ("size", f"{_size(a.size_bytes)} ({a.compression})"),
                ("members", a.member_count),
                ("checkpoint size", _size(a.checkpoint_size_bytes)),
                ("memory pages", _size(a.memory_pages_size_bytes)),
                ("rootfs diff", _size(a.rootfs_diff_size_bytes)),
            ],
        )
    )
    _findings(console, report)
    _process_tree(console, report)
    _processes(console, report.processes)
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
    table = _table(f"Findings ({len(findings)})", "severity", "finding", "evidence", "ATT&CK")
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


def _process_tree(console: Console, report: Report) -> None:
    by_parent: dict[int, list[Process]] = {}
    pids = {p.pid for p in report.processes}
    for p in report.processes:
        by_parent.setdefault(p.ppid if p.ppid in pids else 0, []).append(p)
    tree = Tree(Text("Process tree", style="bold"))

    def label(p: Process) -> str:
        cmd = " ".join(p.cmdline) or p.comm
        extra = f" [{p.state}]" if p.state != "alive" else ""
        threads = f" ({len(p.threads)} threads)" if len(p.threads) > 1 else ""
        return f"{p.pid} {p.comm}{extra}{threads}: {_snippet(cmd, 110)}"

    def add(node: Tree, parent: int, depth: int) -> None:
        for child in by_parent.get(parent, []):
            sub = node.add(label(child))
            if depth < 64 and child.pid != parent:
                add(sub, child.pid, depth + 1)

    add(tree, 0, 0)
    console.print(tree)


def _processes(console: Console, processes: list[Process]) -> None:
    for p in processes:
        rows: list[tuple[str, Any]] = [
            ("ppid / pgid / sid", f"{p.ppid} / {p.pgid} / {p.sid}"),
            ("state", p.state + (f" (exit code {p.exit_code})" if p.exit_code else "")),
            ("exe", p.exe),
            ("cmdline", " ".join(p.cmdline)),
            ("threads", ", ".join(f"{t.tid} {t.comm or ''}".strip() for t in p.threads)),
            ("cwd / root", f"{p.cwd} / {p.root}" if p.cwd else None),
            ("rss", _size(p.rss_bytes)),
            ("seccomp", p.seccomp and f"{p.seccomp.mode} ({p.seccomp.filters} filters)"),
        ]
        if p.credentials:
            cr = p.credentials
            rows.append(("uid/gid", f"{cr.uid}/{cr.gid} euid {cr.euid} egid {cr.egid}"))
            rows.append(("cap eff", ", ".join(cr.cap_effective) or "none"))
        if p.namespaces:
            rows.append(("namespaces", " ".join(f"{k}:{v}" for k, v in p.namespaces.items())))
        if p.env:
            rows.append(("environment", "\n".join(f"{e.name}={e.value}" for e in p.env)))
        console.print(_kv(f"Process {p.pid} ({p.comm})", rows))
        if p.open_files:
            files = _table(f"Open files of {p.pid}", "fd", "type", "path", "flags", "pos", "note")
            for f in p.open_files:
                note = ""
                if f.deleted:
                    note = "DELETED"
                    if f.ghost:
                        note += f", content {f.ghost.size_bytes} B: {_snippet(f.ghost.preview, 60)}"
                files.add_row(
                    str(f.fd),
                    f.type,
                    f.path,
                    f.flags or "",
                    "" if f.position is None else str(f.position),
                    note,
                )
            console.print(files)
    _maps(console, processes)


def _maps(console: Console, processes: list[Process]) -> None:
    """One table for all processes: the areas that have dumped pages (the rest are counted)."""
    total = sum(len(p.maps) for p in processes)
    resident = [(p.pid, m) for p in processes for m in p.maps if m.rss_bytes]
    if not total:
        return
    table = _table(
        f"Memory maps: {total} areas, {len(resident)} with dumped pages (all areas in JSON)",
        "pid",
        "start",
        "end",
        "perms",
        "size",
        "rss",
        "name",
    )
    for pid, m in resident:
        table.add_row(
            str(pid), m.start, m.end, m.perms, _size(m.size_bytes), _size(m.rss_bytes), m.name
        )
    console.print(table)


def _sockets(console: Console, report: Report) -> None:
    if report.sockets:
        table = _table(
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
            local = s.local_address or ""
            if s.local_port is not None and s.family.startswith("inet"):
                local = f"{local}:{s.local_port}"
            remote = ""
            if s.remote_address is not None and s.family.startswith("inet"):
                remote = f"{s.remote_address}:{s.remote_port}"
            elif s.peer_inode:
                remote = f"peer inode {s.peer_inode}"
            kind = f"{s.type}/{s.protocol}" if s.protocol else s.type
            table.add_row(
                holders,
                s.family,
                kind,
                s.state or "",
                local,
                remote,
                _queue(s.receive_queue),
                _queue(s.send_queue),
            )
        console.print(table)
    if report.pipes:
        table = _table("Pipes", "inode", "type", "held by (pid/fd)", "buffered")
        for pipe in report.pipes:
            holders = ", ".join(f"{h.pid}/{h.fd}" for h in pipe.held_by)
            table.add_row(str(pipe.id), pipe.type, holders, _queue(pipe.buffered))
        console.print(table)


def _rootfs(console: Console, report: Report) -> None:
    r = report.rootfs
    if r.changed:
        table = _table(
            f"Changed files (rootfs-diff.tar, {r.format})", "path", "type", "size", "mode", "sha256"
        )
        for e in r.changed:
            target = f" -> {e.link_target}" if e.link_target else ""
            table.add_row(e.path + target, e.type, str(e.size_bytes), e.mode, e.sha256 or "")
        console.print(table)
    if r.deleted:
        console.print(_kv(f"Deleted files ({r.deleted_source})", [("paths", "\n".join(r.deleted))]))


def _memory(console: Console, report: Report) -> None:
    for s in report.memory.searches:
        more = f", showing {len(s.matches)}" if s.truncated else ""
        table = _table(
            f"Memory search {s.kind} {s.pattern!r}: {s.total_matches} matches{more}",
            "pid",
            "address",
            "mapping",
            "context",
        )
        for m in s.matches:
            table.add_row(str(m.pid), m.address, m.mapping or "", m.context)
        console.print(table)


def _misc(console: Console, report: Report) -> None:
    if report.shared_memory:
        table = _table(
            "Shared memory objects", "shmid", "kind", "name", "size", "dumped", "sha256", "used by"
        )
        for o in report.shared_memory:
            table.add_row(
                str(o.shmid),
                o.kind,
                o.name or "",
                _size(o.size_bytes),
                _size(o.dumped_bytes),
                o.sha256 or "",
                ", ".join(o.used_by),
            )
        console.print(table)
    if report.namespaces:
        table = _table("Namespaces", "type", "id", "details")
        for ns in report.namespaces:
            details = ", ".join(f"{k}={v}" for k, v in ns.details.items())
            table.add_row(ns.type, str(ns.id), details)
        console.print(table)
    if report.mounts:
        table = _table("Mounts", "origin", "mountpoint", "type", "source", "options")
        for m in report.mounts:
            table.add_row(m.origin, m.mountpoint, m.fstype or "", m.source or "", m.options or "")
        console.print(table)
    if report.dump_stats:
        stats = {k: v for k, v in vars(report.dump_stats).items() if v is not None}
        console.print(_kv("CRIU dump statistics (times in µs)", list(stats.items())))
    if report.log:
        cut = " (last part)" if report.log.truncated else ""
        console.print(
            _kv(
                f"Container log: {report.log.member}{cut}",
                [("content", report.log.content.rstrip("\n")[-4000:])],
            )
        )
    if report.dump_log:
        d = report.dump_log
        console.print(
            _kv(
                "CRIU dump.log",
                [
                    ("criu", d.criu_version),
                    ("result", "finished successfully" if d.succeeded else "NOT finished"),
                    ("errors / warnings", "\n".join(d.problems)),
                ],
            )
        )
    if report.bind_mounts:
        console.print(_kv("bind.mounts", [("entries", report.bind_mounts)]))
    if report.network_status:
        console.print(_kv("network.status", [("content", report.network_status)]))
    if report.warnings:
        console.print(_kv("Warnings", [(str(i + 1), w) for i, w in enumerate(report.warnings)]))


def render_diff(diff: DiffReport) -> str:
    console, buf = _console()
    console.print(
        _kv(
            "Checkpoint diff",
            [
                ("A", f"{diff.a.path} ({diff.a.sha256[:12]})"),
                ("B", f"{diff.b.path} ({diff.b.sha256[:12]})"),
                ("same container", diff.same_container),
            ],
        )
    )
    for title, section in (
        ("Processes", diff.processes),
        ("Open files", diff.files),
        ("Sockets", diff.sockets),
        ("Rootfs changes", diff.rootfs),
        ("Findings", diff.findings),
    ):
        table = _table(
            f"{title}: +{len(section.added)} -{len(section.removed)} ~{len(section.changed)}",
            "",
            "item",
        )
        for item in section.added:
            table.add_row("+", item)
        for item in section.removed:
            table.add_row("-", item)
        for item in section.changed:
            table.add_row("~", item)
        console.print(table)
    m = diff.memory
    table = _table("Memory", "pid", "rss A", "rss B", "change")
    for row in m.processes:
        table.add_row(
            str(row.pid), _size(row.a_bytes), _size(row.b_bytes), f"{row.delta_bytes:+d} B"
        )
    table.add_row("all", _size(m.a_bytes), _size(m.b_bytes), f"{m.delta_bytes:+d} B")
    console.print(table)
    return buf.getvalue()
