"""A one-line progress bar on stderr for long byte streams: bytes done (of the total when
known), rate and ETA. It draws only when its stream is a terminal and it is not asked to be
quiet, so piped output and logs stay clean; at most ~8 redraws a second.

Used by ``kubectl forensic get-archive`` (the download) and the analyzer's ``analyze`` and
``search`` (reading a large archive). The bottom layer: no dependency beyond the standard
library."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

_REDRAW_SECONDS = 0.125
_WIDTH = 24
#: Smaller archives are read in seconds: no bar for them (issue 18: "a few hundred MB").
LARGE_ARCHIVE_BYTES = 256 << 20


def human_bytes(count: float) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _clock_text(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """``advance(n)`` as bytes arrive, ``close()`` at the end (or use ``with``)."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and _is_terminal(self.stream)
        self.label = label
        self.total = total if total and total > 0 else None
        self.done = 0
        self._clock = clock
        self._started = clock()
        self._drawn_at = -_REDRAW_SECONDS
        self._width = 0

    def advance(self, count: int) -> None:
        self.done += count
        if self.enabled and self._clock() - self._drawn_at >= _REDRAW_SECONDS:
            self._draw()

    def line(self) -> str:
        """The bar as it would be drawn now."""
        elapsed = max(self._clock() - self._started, 1e-6)
        rate = self.done / elapsed
        parts = [self.label]
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * _WIDTH)
            parts.append(f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {fraction:4.0%}")
            parts.append(f"{human_bytes(self.done)} / {human_bytes(self.total)}")
        else:
            parts.append(human_bytes(self.done))
        parts.append(f"{human_bytes(rate)}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_clock_text((self.total - self.done) / rate)}")
        return "  ".join(parts)

    def _draw(self) -> None:
        self._drawn_at = self._clock()
        text = self.line()
        # Pad over a longer previous line; \r returns to the start without scrolling.
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """Draws the final state and ends the line (nothing when not drawing)."""
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def for_archive(path: Path, *, stream: TextIO | None = None) -> Progress:
    """The analyzer's bar over one pass of ``path``: drawn only for a large archive."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # the analyzer reports a missing or unreadable file in its own words
    return Progress(path.name, size, stream=stream, quiet=size < LARGE_ARCHIVE_BYTES)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False
