"""How text output is laid out: its width and whether it is coloured. The CLI decides (from
``--color``, ``NO_COLOR``, ``$COLUMNS`` and whether stdout is a terminal); the renderers obey.
No rich import here, so that deciding costs nothing for JSON output."""

from __future__ import annotations

from dataclasses import dataclass

#: The width of text written to a file or a pipe (wide enough for an archive's sha256 line).
DEFAULT_WIDTH = 140
#: Below this, rich's tables are unreadable whatever the terminal.
MIN_WIDTH = 40


@dataclass(frozen=True)
class TextStyle:
    width: int = DEFAULT_WIDTH
    color: bool = False


PLAIN = TextStyle()
