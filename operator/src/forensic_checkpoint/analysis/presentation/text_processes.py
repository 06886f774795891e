"""The processes in the text output: the tree, one key-value table per process with its open
files, and the memory maps that have dumped pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from forensic_checkpoint.analysis.presentation.rich_tables import (
    human_size,
    key_values,
    new_table,
    snippet,
)

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.model.process import Process
    from forensic_checkpoint.analysis.model.report import Report


def render_process_tree(console: Console, report: Report) -> None:
    by_parent: dict[int, list[Process]] = {}
    pids = {p.pid for p in report.processes}
    for p in report.processes:
        by_parent.setdefault(p.ppid if p.ppid in pids else 0, []).append(p)
    tree = Tree(Text("Process tree", style="bold"))

    def label(p: Process) -> str:
        cmd = " ".join(p.cmdline) or p.comm
        extra = f" [{p.state}]" if p.state != "alive" else ""
        threads = f" ({len(p.threads)} threads)" if len(p.threads) > 1 else ""
        return f"{p.pid} {p.comm}{extra}{threads}: {snippet(cmd, 110)}"

    def add(node: Tree, parent: int, depth: int) -> None:
        for child in by_parent.get(parent, []):
            sub = node.add(label(child))
            if depth < 64 and child.pid != parent:
                add(sub, child.pid, depth + 1)

    add(tree, 0, 0)
    console.print(tree)


def render_processes(console: Console, processes: list[Process]) -> None:
    for p in processes:
        rows: list[tuple[str, Any]] = [
            ("ppid / pgid / sid", f"{p.ppid} / {p.pgid} / {p.sid}"),
            ("state", p.state + (f" (exit code {p.exit_code})" if p.exit_code else "")),
            ("exe", p.exe),
            ("cmdline", " ".join(p.cmdline)),
            ("threads", ", ".join(f"{t.tid} {t.comm or ''}".strip() for t in p.threads)),
            ("cwd / root", f"{p.cwd} / {p.root}" if p.cwd else None),
            ("rss", human_size(p.rss_bytes)),
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
        console.print(key_values(f"Process {p.pid} ({p.comm})", rows))
        _open_files(console, p)
    _maps(console, processes)


def _maps(console: Console, processes: list[Process]) -> None:
    """One table for all processes: the areas that have dumped pages (the rest are counted)."""
    total = sum(len(p.maps) for p in processes)
    resident = [(p.pid, m) for p in processes for m in p.maps if m.rss_bytes]
    if not total:
        return
    table = new_table(
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
            str(pid),
            m.start,
            m.end,
            m.perms,
            human_size(m.size_bytes),
            human_size(m.rss_bytes),
            m.name,
        )
    console.print(table)


def _open_files(console: Console, p: Process) -> None:
    if not p.open_files:
        return
    files = new_table(f"Open files of {p.pid}", "fd", "type", "path", "flags", "pos", "note")
    for f in p.open_files:
        note = ""
        if f.deleted:
            note = "DELETED"
            if f.ghost:
                note += f", content {f.ghost.size_bytes} B: {snippet(f.ghost.preview, 60)}"
        files.add_row(
            str(f.fd),
            f.type,
            f.path,
            f.flags or "",
            "" if f.position is None else str(f.position),
            note,
        )
    console.print(files)
