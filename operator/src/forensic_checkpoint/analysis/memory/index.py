"""Where each present page's bytes are in ``pages-<id>.img``, and which pages are holes.

CRIU (``criu/pagemap.c`` ``skip_pagemap_pages``) advances the pages-file offset only for entries
flagged ``PE_PRESENT``. ``PE_PARENT`` pages live in a pre-dump parent image directory and
``PE_LAZY`` pages on a page server: neither has bytes here, so they become holes, and counting
them (as go-criu does) would shift every later page.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from forensic_checkpoint.analysis.memory.pagemap import PE_LAZY, PE_PARENT, PE_PRESENT, Pagemap
from forensic_checkpoint.errors import ImageError

#: Page sizes Linux uses on the architectures CRIU supports (x86_64 4K; arm64 4/16/64K; ppc64 64K).
PLAUSIBLE_PAGE_SIZES = (4096, 8192, 16384, 65536)
DEFAULT_PAGE_SIZE = 4096

HoleKind = Literal["parent", "lazy", "unknown"]


class PresentRun(NamedTuple):
    """Pages whose bytes are in the pages file: ``[vaddr, vaddr+size)`` at ``file_offset``."""

    vaddr: int
    size: int
    file_offset: int

    @property
    def end(self) -> int:
        return self.vaddr + self.size


class Hole(NamedTuple):
    """Pages listed in the pagemap whose bytes are not in this archive's pages file."""

    vaddr: int
    size: int
    kind: HoleKind

    @property
    def end(self) -> int:
        return self.vaddr + self.size


def derive_page_size(pages_file_size: int, pagemap: Pagemap | int) -> int:
    """Page size = size of the pages file / number of present pages (not stored in images).

    ``pagemap`` may be the present-page count. With no present pages there is nothing to divide
    and the x86_64 default is returned. Raises ImageError if the division is not exact or gives
    a size no Linux architecture uses (a truncated or mismatched pages file).
    """
    present = pagemap if isinstance(pagemap, int) else pagemap.present_pages
    if present <= 0:
        if pages_file_size:
            raise ImageError("pages file has bytes but the pagemap lists no present pages")
        return DEFAULT_PAGE_SIZE
    size, rest = divmod(pages_file_size, present)
    if rest or size not in PLAUSIBLE_PAGE_SIZES:
        raise ImageError(
            f"pages file of {pages_file_size} bytes does not hold {present} whole pages"
        )
    return size


@dataclass(frozen=True)
class PageIndex:
    """Present runs (merged when contiguous in memory and file) and holes, sorted by vaddr."""

    pages_id: int
    page_size: int
    runs: tuple[PresentRun, ...]
    holes: tuple[Hole, ...]
    _run_starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _hole_starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Bisect keys for O(log n) random access; frozen, so set once here.
        object.__setattr__(self, "_run_starts", tuple(r.vaddr for r in self.runs))
        object.__setattr__(self, "_hole_starts", tuple(h.vaddr for h in self.holes))

    @classmethod
    def build(cls, pagemap: Pagemap, page_size: int = DEFAULT_PAGE_SIZE) -> PageIndex:
        """Lay the pagemap out over the pages file. Raises ImageError on misaligned entries."""
        if page_size <= 0 or page_size & (page_size - 1):
            raise ImageError(f"page size {page_size} is not a power of two")
        runs: list[PresentRun] = []
        holes: list[Hole] = []
        offset = 0  # pages-file offset: advanced by PE_PRESENT entries only
        prev_end = 0
        run_start = run_end = run_off = -1  # the run being extended (tuples are immutable)
        for i, (vaddr, nr_pages, flags) in enumerate(pagemap.entries):
            if vaddr % page_size:
                raise ImageError(f"pagemap entry {i} is not aligned to {page_size}-byte pages")
            if vaddr < prev_end:
                raise ImageError(f"pagemap entry {i} overlaps the previous one")
            size = nr_pages * page_size
            prev_end = vaddr + size
            if size == 0:
                continue
            if flags & PE_PRESENT:
                if vaddr != run_end:  # a gap in memory: close the current run
                    if run_start >= 0:
                        runs.append(PresentRun(run_start, run_end - run_start, run_off))
                    run_start, run_off = vaddr, offset
                run_end = vaddr + size
                offset += size
            else:
                if run_start >= 0:
                    runs.append(PresentRun(run_start, run_end - run_start, run_off))
                    run_start = run_end = -1
                kind: HoleKind = (
                    "parent" if flags & PE_PARENT else "lazy" if flags & PE_LAZY else "unknown"
                )
                holes.append(Hole(vaddr, size, kind))
        if run_start >= 0:
            runs.append(PresentRun(run_start, run_end - run_start, run_off))
        return cls(pagemap.pages_id, page_size, tuple(runs), tuple(holes))

    @property
    def present_bytes(self) -> int:
        """Expected size of the pages file."""
        return sum(r.size for r in self.runs)

    @property
    def present_pages(self) -> int:
        return self.present_bytes // self.page_size

    def locate(self, vaddr: int) -> tuple[PresentRun, int] | None:
        """Return the run holding ``vaddr`` and the file offset of that byte, or None."""
        i = bisect.bisect_right(self._run_starts, vaddr) - 1
        if i >= 0:
            run = self.runs[i]
            if vaddr < run.end:
                return run, run.file_offset + (vaddr - run.vaddr)
        return None

    def hole_at(self, vaddr: int) -> Hole | None:
        """The parent/lazy hole covering ``vaddr``, if any."""
        i = bisect.bisect_right(self._hole_starts, vaddr) - 1
        if i >= 0 and vaddr < self.holes[i].end:
            return self.holes[i]
        return None
