"""Resident set per VMA: pages whose bytes the checkpoint holds, and pages it does not."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from forensic_checkpoint.analysis.memory.index import Hole, PageIndex, PresentRun
from forensic_checkpoint.analysis.memory.vmas import Vma, VmaLike, normalize_vmas


@dataclass(frozen=True, slots=True)
class VmaRss:
    """Dumped pages of one VMA. ``unavailable_pages`` are parent/lazy holes inside it."""

    vma: Vma
    present_pages: int
    unavailable_pages: int
    page_size: int

    @property
    def present_bytes(self) -> int:
        return self.present_pages * self.page_size


def _overlap(spans: Sequence[PresentRun | Hole], starts: Sequence[int], lo: int, hi: int) -> int:
    """Bytes of ``spans`` (sorted, disjoint) inside ``[lo, hi)``."""
    total = 0
    i = max(0, bisect.bisect_right(starts, lo) - 1)
    while i < len(spans) and spans[i].vaddr < hi:
        s = spans[i]
        total += max(0, min(s.end, hi) - max(s.vaddr, lo))
        i += 1
    return total


def rss_by_vma(index: PageIndex, vmas: Iterable[VmaLike]) -> list[VmaRss]:
    """One ``VmaRss`` per VMA, in address order. Sum of ``present_pages`` over all VMAs equals
    ``index.present_pages`` when every dumped page lies in a VMA (CRIU only dumps mapped pages).
    """
    run_starts = [r.vaddr for r in index.runs]
    hole_starts = [h.vaddr for h in index.holes]
    page = index.page_size
    out = []
    for vma in normalize_vmas(vmas):
        present = _overlap(index.runs, run_starts, vma.start, vma.end)
        missing = _overlap(index.holes, hole_starts, vma.start, vma.end)
        out.append(VmaRss(vma, present // page, missing // page, page))
    return out
