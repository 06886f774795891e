"""Streaming literal / regex search over the pages file of one process (or shmem object).

Bytes arrive in pages-file order (``feed``), which is also vaddr order. Each present run is
scanned unit by unit (the caller's chunks, scanned in place, or small chunks gathered up to
``chunk_size``). A match may start in one unit and end in the next: the last
``max_length - 1 + context`` bytes of a unit are kept and scanned together with the head of the
next one (a small junction buffer), so a match of at most ``max_length`` bytes is found whatever
page, chunk or pagemap-entry boundary it straddles, without copying the units. Runs are already
merged when their memory is contiguous (see ``PageIndex.build``), and a new run (a gap in
virtual addresses) starts afresh: nothing is ever matched across a gap. Raw bytes are searched;
nothing is substituted. Peak memory is one chunk plus the junction, whatever the archive size.
Literals in large units are found by yara-x in one pass for all of them (``literals.py``),
elsewhere by ``bytes.find``; both give the same matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from forensic_checkpoint.analysis.memory.index import PageIndex, PresentRun
from forensic_checkpoint.analysis.memory.literals import MIN_BULK, LiteralFinder
from forensic_checkpoint.analysis.memory.process import ProcessMemory
from forensic_checkpoint.analysis.memory.vmas import Vma, VmaLike, find_vma, normalize_vmas
from forensic_checkpoint.user_regex import Regex, compile_user_regex

DEFAULT_CHUNK_SIZE = 8 << 20
#: Longest regex match guaranteed to be found across buffer boundaries (and reported whole).
DEFAULT_REGEX_MAX_LENGTH = 1024
DEFAULT_CONTEXT = 32
DEFAULT_MAX_HITS = 10_000


@dataclass(frozen=True)
class Pattern:
    """A literal byte string or a compiled bytes regex, with its longest possible match."""

    text: str
    needle: bytes | None
    compiled: Regex | None
    max_length: int

    @classmethod
    def literal(cls, value: bytes | str) -> Pattern:
        """Exact bytes (``str`` is UTF-8 encoded). Found by ``bytes.find``."""
        needle = value.encode() if isinstance(value, str) else bytes(value)
        if not needle:
            raise ValueError("empty search pattern")
        text = value if isinstance(value, str) else needle.decode("utf-8", "backslashreplace")
        return cls(text, needle, None, len(needle))

    @classmethod
    def regex(cls, expr: bytes | str, *, max_length: int = DEFAULT_REGEX_MAX_LENGTH) -> Pattern:
        """An RE2 expression over bytes: linear in the memory scanned whatever the pattern
        (``(\\x00|\\x00\\x00)*\\x01`` included), so a ForensicCheckpoint's regex cannot
        hold an agent's analysis for minutes. RE2 has no backreferences or lookaround; such a
        pattern is refused here. Matches longer than ``max_length`` may be cut short or missed
        where they straddle a buffer boundary; shorter ones never are. ``^`` sees only the
        current buffer."""
        raw = expr.encode() if isinstance(expr, str) else bytes(expr)
        if max_length < 1:
            raise ValueError("max_length must be positive")
        compiled = compile_user_regex(raw)
        text = expr if isinstance(expr, str) else raw.decode("utf-8", "backslashreplace")
        return cls(text, None, compiled, max_length)


@dataclass(frozen=True, slots=True)
class MemoryHit:
    """One match: where it is in memory and in the pages file, and the raw bytes around it."""

    pattern_index: int
    pattern: str
    pid: int | None
    vaddr: int
    match: bytes
    before: bytes
    after: bytes
    vma: Vma | None
    pages_id: int
    file_offset: int


Buffer = bytes | bytearray


class MemoryScanner:
    """Push-style search: ``feed`` the pages file in order, then ``finish``.

    ``counts`` holds the number of matches per pattern, including those beyond ``max_hits``
    (only the first ``max_hits`` per pattern are returned). Bytes of present pages overlapping
    ``retain`` vaddr ranges (widened to whole pages) are kept for ``retained()`` (argv /
    environment of a streamed archive), so one pass serves both search and random reads.
    """

    def __init__(
        self,
        index: PageIndex,
        patterns: Sequence[Pattern],
        *,
        pid: int | None = None,
        vmas: Iterable[VmaLike] | None = None,
        context: int = DEFAULT_CONTEXT,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_hits: int = DEFAULT_MAX_HITS,
        retain: Iterable[tuple[int, int]] = (),
        bulk_min: int = MIN_BULK,
    ) -> None:
        if context < 0:
            raise ValueError("context cannot be negative")
        self.index = index
        self.patterns = tuple(patterns)
        self.pid = pid
        self.vmas = normalize_vmas(vmas)
        self._vma_starts = [v.start for v in self.vmas]
        self.context = context
        longest = max((p.max_length for p in self.patterns), default=1)
        self._lookahead = longest - 1 + context
        self.max_hits = max_hits
        self.counts = [0] * len(self.patterns)
        self._emitted = [0] * len(self.patterns)
        self._resume = [0] * len(self.patterns)
        self._runs = index.runs
        self._run_i = 0
        self._pos = 0  # pages-file offset of the next byte fed
        # Bytes needed after a match start before it can be reported (match + after-context),
        # and the tail of the previous unit kept to scan the junction with the next one.
        self._tail_len = self._lookahead + context
        self._min_unit = 4 * self._tail_len
        self._chunk = max(chunk_size, self._min_unit)
        self._tail = b""
        self._acc: list[bytes] = []
        self._acc_len = 0
        self._acc_abs = 0
        self.extra_bytes = 0
        # Whole pages are kept: strings read from a range's start may run past its end.
        page = index.page_size
        self._retain = sorted((a - a % page, -(-b // page) * page) for a, b in retain if b > a)
        self._kept: list[tuple[int, bytes]] = []
        # Units of at least bulk_min bytes have their literals found by yara-x (made on
        # first use, so small processes never pay for compiling the patterns).
        self._bulk_min = bulk_min
        self._literals = [k for k, p in enumerate(self.patterns) if p.needle is not None]
        self._finder: LiteralFinder | None = None

    @property
    def bytes_fed(self) -> int:
        return self._pos

    @property
    def complete(self) -> bool:
        """Every present byte the pagemap promises has been fed."""
        return self._run_i >= len(self._runs)

    def feed(self, data: bytes | bytearray | memoryview) -> list[MemoryHit]:
        """Take the next bytes of the pages file; return the hits that are now certain.

        A ``bytearray`` is scanned in place and not referenced after the call returns, so the
        caller may refill it (``readinto``) for the next call.
        """
        if isinstance(data, memoryview):
            data = bytes(data)  # bytes.find needs bytes or bytearray
        hits: list[MemoryHit] = []
        n = len(data)
        i = 0
        while i < n and self._run_i < len(self._runs):
            run = self._runs[self._run_i]
            run_end = run.file_offset + run.size
            take = min(n - i, run_end - self._pos)
            piece = data if (i == 0 and take == n) else data[i : i + take]
            if self._retain:
                self._keep(run, self._pos, piece)
            at = self._pos
            self._pos += take
            i += take
            final = self._pos == run_end
            self._push(run, piece, at, final=final, hits=hits)
            if final:
                self._run_i += 1
        self.extra_bytes += n - i
        return hits

    def finish(self) -> list[MemoryHit]:
        """Flush a run cut short by a truncated pages file (``complete`` stays False)."""
        hits: list[MemoryHit] = []
        if self._run_i < len(self._runs):
            run = self._runs[self._run_i]
            if self._acc:
                unit, at = b"".join(self._acc), self._acc_abs
                self._acc, self._acc_len = [], 0
                self._unit(run, unit, at, final=True, hits=hits)
            elif self._tail:
                self._unit(run, b"", self._pos, final=True, hits=hits)
        return hits

    def retained(self) -> ProcessMemory:
        """Random access to the bytes kept for the ``retain`` ranges."""
        return ProcessMemory.from_fragments(self.index, self._kept)

    def _keep(self, run: PresentRun, file_off: int, piece: Buffer) -> None:
        lo = run.vaddr + (file_off - run.file_offset)
        hi = lo + len(piece)
        for a, b in self._retain:
            if a >= hi:
                break
            if b > lo:
                s, e = max(a, lo), min(b, hi)
                self._kept.append((file_off + (s - lo), bytes(piece[s - lo : e - lo])))

    def _push(
        self, run: PresentRun, piece: Buffer, at: int, *, final: bool, hits: list[MemoryHit]
    ) -> None:
        """Scan big pieces in place (no copy); gather small ones into one unit first."""
        if not self._acc and (final or len(piece) >= self._min_unit):
            self._unit(run, piece, at, final=final, hits=hits)
            return
        if not self._acc:
            self._acc_abs = at
        self._acc.append(piece if isinstance(piece, bytes) else bytes(piece))
        self._acc_len += len(piece)
        if final or self._acc_len >= self._chunk:
            unit, start = b"".join(self._acc), self._acc_abs
            self._acc, self._acc_len = [], 0
            self._unit(run, unit, start, final=final, hits=hits)

    def _unit(
        self, run: PresentRun, unit: Buffer, at: int, *, final: bool, hits: list[MemoryHit]
    ) -> None:
        """Scan ``unit`` (pages-file offset ``at``; at least ``_min_unit`` bytes unless final).

        Matches starting in the previous unit's last ``_lookahead`` bytes are found in a small
        junction buffer (its kept tail + this unit's head); then the unit itself is scanned for
        matches that start early enough to be complete, or anywhere when the run ends here.
        """
        tail = self._tail
        n_tail = self._tail_len
        if tail:
            junction = tail + bytes(unit[:n_tail])
            hi = len(junction) if final and len(unit) <= n_tail else len(tail)
            for k, pat in enumerate(self.patterns):
                self._scan(k, pat, junction, at - len(tail), hi, run, b"", hits)
        hi = len(unit) if final else len(unit) - self._lookahead
        found = self._bulk_offsets(unit, hi)
        for k, pat in enumerate(self.patterns):
            self._scan(k, pat, unit, at, hi, run, tail, hits, found.get(k))
        self._tail = b"" if final else bytes(unit[-n_tail:])

    def _bulk_offsets(self, unit: Buffer, hi: int) -> dict[int, list[int]]:
        """pattern index -> offsets of its matches in ``unit`` (yara-x), for the literals it
        could count; patterns left out are searched with bytes.find."""
        if not self._literals or hi < self._bulk_min:
            return {}
        if self._finder is None:
            self._finder = LiteralFinder(
                [cast(bytes, self.patterns[k].needle) for k in self._literals]
            )
        if not self._finder.usable:
            return {}
        offsets = self._finder.offsets(unit if isinstance(unit, bytes) else bytes(unit))
        return {k: o for k, o in zip(self._literals, offsets, strict=True) if o is not None}

    def _scan(  # noqa: PLR0917 - hot path: positional arguments are measurably cheaper
        self,
        k: int,
        pat: Pattern,
        buf: Buffer,
        base: int,
        hi: int,
        run: PresentRun,
        prefix: bytes,
        hits: list[MemoryHit],
        offsets: list[int] | None = None,
    ) -> None:
        """Report matches of pattern ``k`` starting before ``buf[hi]`` and not yet reported
        (``buf[0]`` is at pages-file offset ``base``; ``prefix`` precedes it, for context).
        ``offsets``: every start of the literal in ``buf``, overlapping ones too (yara-x)."""
        start = max(0, self._resume[k] - base)
        last_end = start
        if offsets is not None and pat.needle is not None:
            size = len(pat.needle)
            for p in offsets:
                if p >= hi:
                    break
                if p >= last_end:  # leftmost, non-overlapping: as the find loop below
                    self._emit(k, pat, buf, base, p, p + size, run, prefix, hits)
                    last_end = p + size
        elif pat.needle is not None:
            needle = pat.needle
            size = len(needle)
            find = buf.find
            p = find(needle, start)
            while 0 <= p < hi:
                self._emit(k, pat, buf, base, p, p + size, run, prefix, hits)
                last_end = p + size
                p = find(needle, last_end)
        elif pat.compiled is not None:
            for m in pat.compiled.finditer(buf, start):
                s, e = m.span()
                if s >= hi:
                    break
                if e > s:
                    self._emit(k, pat, buf, base, s, e, run, prefix, hits)
                    last_end = e
        self._resume[k] = base + max(hi, last_end)

    def _emit(  # noqa: PLR0917
        self,
        k: int,
        pat: Pattern,
        buf: Buffer,
        base: int,
        s: int,
        e: int,
        run: PresentRun,
        prefix: bytes,
        hits: list[MemoryHit],
    ) -> None:
        self.counts[k] += 1
        if self._emitted[k] >= self.max_hits:
            return
        self._emitted[k] += 1
        file_off = base + s
        vaddr = run.vaddr + (file_off - run.file_offset)
        ctx = self.context
        hits.append(
            MemoryHit(
                pattern_index=k,
                pattern=pat.text,
                pid=self.pid,
                vaddr=vaddr,
                match=bytes(buf[s:e]),
                before=(prefix[len(prefix) - (ctx - s) :] if s < ctx and prefix else b"")
                + bytes(buf[max(0, s - ctx) : s]),
                after=bytes(buf[e : e + ctx]),
                vma=find_vma(self.vmas, self._vma_starts, vaddr),
                pages_id=self.index.pages_id,
                file_offset=file_off,
            )
        )
