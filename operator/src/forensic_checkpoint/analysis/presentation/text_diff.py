"""Text output of the ``diff`` and ``list`` commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from forensic_checkpoint.analysis.presentation.rich_tables import (
    human_size,
    key_values,
    new_console,
    new_table,
)
from forensic_checkpoint.analysis.presentation.style import PLAIN, TextStyle

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.model.diff import DiffReport
    from forensic_checkpoint.analysis.model.listing import CheckpointList


def render_list(listing: CheckpointList, style: TextStyle = PLAIN) -> str:
    console, buf = new_console(style)
    table = new_table(
        "Checkpoints", "namespace", "pod", "container", "engine", "checkpointed", "size", "path"
    )
    for c in listing.checkpoints:
        if c.error:
            table.add_row("", "", "", "", f"error: {c.error}", human_size(c.size_bytes), c.path)
        else:
            table.add_row(
                c.namespace or "-",
                c.pod or "-",
                c.container or "-",
                c.engine or "-",
                c.checkpointed_at or "-",
                human_size(c.size_bytes),
                c.path,
            )
    console.print(table)
    return buf.getvalue()


def render_diff(diff: DiffReport, style: TextStyle = PLAIN) -> str:
    console, buf = new_console(style)
    console.print(
        key_values(
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
        table = new_table(
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
    table = new_table("Memory", "pid", "rss A", "rss B", "change")
    for row in m.processes:
        table.add_row(
            str(row.pid),
            human_size(row.a_bytes),
            human_size(row.b_bytes),
            f"{row.delta_bytes:+d} B",
        )
    table.add_row("all", human_size(m.a_bytes), human_size(m.b_bytes), f"{m.delta_bytes:+d} B")
    console.print(table)
    return buf.getvalue()
