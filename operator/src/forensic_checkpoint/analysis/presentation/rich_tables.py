"""The building blocks of the text output: a rich console of the width and colour the CLI
chose, titled tables, key-value tables, sizes and one-line snippets."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from forensic_checkpoint.analysis.presentation.style import PLAIN, TextStyle

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.model.report import QueueData


_SNIPPET = 200


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


def snippet(text: str, limit: int = _SNIPPET) -> str:
    flat = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return flat if len(flat) <= limit else flat[:limit] + "…"


def queue_text(q: QueueData | None) -> str:
    if q is None or q.size_bytes == 0:
        return ""
    return f"{q.size_bytes} B: {snippet(q.text, 60)}"


def new_table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    return table


def key_values(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_header=False)
    table.add_column("field", style="cyan", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in rows:
        if value not in (None, "", [], {}):
            table.add_row(key, str(value))
    return table


def new_console(style: TextStyle = PLAIN) -> tuple[Console, io.StringIO]:
    """A console that renders into a string: tables fold or wrap to ``style.width``; ANSI
    colours only with ``style.color`` (never else: the string may go to a file or a pipe)."""
    buf = io.StringIO()
    return Console(
        file=buf,
        width=style.width,
        no_color=not style.color,
        force_terminal=style.color,
        color_system="standard" if style.color else None,
        highlight=False,
        soft_wrap=False,
        markup=False,
        emoji=False,
    ), buf
