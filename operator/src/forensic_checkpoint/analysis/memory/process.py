"""Random access to one process's memory by virtual address (argv, environment, pointers)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import BinaryIO

from forensic_checkpoint.analysis.memory.index import PageIndex
from forensic_checkpoint.errors import ImageError

#: Reads ``size`` bytes at ``offset`` of the pages file; may return fewer (truncated or missing).
PagesReader = Callable[[int, int], bytes]


class MemoryUnavailableError(ImageError):
    """The requested addresses have no bytes in this archive (not dumped, parent, lazy)."""

    reason = "MemoryUnavailable"


class ProcessMemory:
    """Reads virtual addresses through a ``PageIndex`` and a pages-file reader.

    Pages that CRIU did not dump are not guessed (an untouched anonymous page would be zeros,
    a file page comes from the file): reading them raises ``MemoryUnavailableError``.
    ``PE_PARENT`` holes are read from ``parent`` (the pre-dump image of the same process) when
    the caller has one, as CRIU's ``read_parent_page`` does; otherwise they are unavailable too.
    """

    def __init__(
        self, index: PageIndex, reader: PagesReader, *, parent: ProcessMemory | None = None
    ) -> None:
        self.index = index
        self._reader = reader
        self.parent = parent

    @classmethod
    def from_file(
        cls, index: PageIndex, f: BinaryIO, offset: int = 0, *, parent: ProcessMemory | None = None
    ) -> ProcessMemory:
        """Pages file inside a seekable file at ``offset`` (e.g. a plain tar member's data)."""

        def read(at: int, size: int) -> bytes:
            f.seek(offset + at)
            return f.read(size)

        return cls(index, read, parent=parent)

    @classmethod
    def from_bytes(
        cls, index: PageIndex, data: bytes, *, parent: ProcessMemory | None = None
    ) -> ProcessMemory:
        """Whole pages file in memory (small images)."""
        view = memoryview(data)
        return cls(index, lambda at, size: bytes(view[at : at + size]), parent=parent)

    @classmethod
    def from_fragments(
        cls, index: PageIndex, fragments: Iterable[tuple[int, bytes]]
    ) -> ProcessMemory:
        """Only some byte ranges of the pages file, as ``(file_offset, bytes)`` (kept while
        streaming a compressed archive); reads outside them raise MemoryUnavailableError."""
        merged: list[tuple[int, bytearray]] = []
        for off, data in sorted(fragments):
            if merged and merged[-1][0] + len(merged[-1][1]) == off:
                merged[-1][1].extend(data)
            else:
                merged.append((off, bytearray(data)))
        starts = [off for off, _ in merged]

        def read(at: int, size: int) -> bytes:
            i = bisect.bisect_right(starts, at) - 1
            if i < 0:
                return b""
            off, buf = merged[i]
            return bytes(buf[at - off : at - off + size]) if at < off + len(buf) else b""

        return cls(index, read)

    def read(self, vaddr: int, size: int) -> bytes:
        """Exactly ``size`` bytes from ``vaddr``, crossing runs when memory is contiguous."""
        out = bytearray()
        at = vaddr
        while len(out) < size:
            found = self.index.locate(at)
            if found is None:
                hole = self.index.hole_at(at)
                if hole is not None and hole.kind == "parent" and self.parent is not None:
                    want = min(size - len(out), hole.end - at)
                    out += self.parent.read(at, want)
                    at += want
                    continue
                why = f"in a {hole.kind} hole" if hole else "not dumped"
                raise MemoryUnavailableError(f"address 0x{at:x} is {why}")
            run, file_off = found
            want = min(size - len(out), run.end - at)
            data = self._reader(file_off, want)
            if len(data) != want:
                raise MemoryUnavailableError(f"pages file ends before address 0x{at:x}")
            out += data
            at += want
        return bytes(out)

    def try_read(self, vaddr: int, size: int) -> bytes | None:
        """Like ``read`` but None when any byte is unavailable."""
        try:
            return self.read(vaddr, size)
        except MemoryUnavailableError:
            return None

    def read_cstring(self, vaddr: int, limit: int = 4096) -> bytes:
        """NUL-terminated bytes at ``vaddr`` (without the NUL), at most ``limit`` bytes."""
        out = bytearray()
        at = vaddr
        while len(out) < limit:
            step = min(limit - len(out), self.index.page_size - at % self.index.page_size)
            data = self.read(at, step)
            nul = data.find(b"\0")
            if nul >= 0:
                out += data[:nul]
                break
            out += data
            at += step
        return bytes(out)
