"""Where a pages file is read from (a range of a seekable file, bytes, or chunks), and the
one-call ``search`` of a whole pages file with a ``MemoryScanner``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, cast

from forensic_checkpoint.analysis.memory.index import PageIndex
from forensic_checkpoint.analysis.memory.scanner import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONTEXT,
    DEFAULT_MAX_HITS,
    Buffer,
    MemoryHit,
    MemoryScanner,
    Pattern,
)
from forensic_checkpoint.analysis.memory.vmas import VmaLike
from forensic_checkpoint.errors import ImageError


@dataclass(frozen=True, slots=True)
class SeekableRange:
    """The pages file as ``size`` bytes at ``offset`` of a seekable file (a plain tar member)."""

    file: BinaryIO
    offset: int = 0
    size: int | None = None


PagesSource = SeekableRange | BinaryIO | bytes | Iterable[bytes]


def iter_chunks(source: PagesSource, index: PageIndex, chunk_size: int) -> Iterator[Buffer]:
    """Yield the pages file in order, for ``MemoryScanner.feed``.

    A seekable source is read with ``readinto`` into one reused buffer (no allocation per
    chunk; reads stop at run ends so ``feed`` does not have to split them): each chunk is valid
    only until the next one is requested.
    """
    if isinstance(source, bytes):
        yield source
        return
    if isinstance(source, SeekableRange) or hasattr(source, "seek"):
        rng = source if isinstance(source, SeekableRange) else SeekableRange(cast(BinaryIO, source))
        total = index.present_bytes if rng.size is None else min(rng.size, index.present_bytes)
        rng.file.seek(rng.offset)
        readinto = getattr(rng.file, "readinto", None)
        buf = bytearray(min(chunk_size, total))
        view = memoryview(buf)
        pos = 0
        for run in index.runs:
            end = min(run.file_offset + run.size, total)
            while pos < end:
                want = min(len(buf), end - pos)
                if readinto is None:
                    data: Buffer = rng.file.read(want)
                    got = len(data)
                else:
                    got = readinto(view[:want])
                    data = buf if got == len(buf) else buf[:got]
                if not got:
                    return
                pos += got
                yield data
        return
    yield from source


def search(
    source: PagesSource,
    index: PageIndex,
    patterns: Sequence[Pattern],
    *,
    pid: int | None = None,
    vmas: Iterable[VmaLike] | None = None,
    context: int = DEFAULT_CONTEXT,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_hits: int = DEFAULT_MAX_HITS,
) -> Iterator[MemoryHit]:
    """Search one pages file; ``source`` is a ``SeekableRange``, a seekable binary file
    (positioned data from offset 0), the whole file as bytes, or an iterable of byte chunks.

    Hits come in pages-file (= vaddr) order per pattern buffer. Raises ImageError after the
    last hit if the pages file is shorter than the pagemap promises.
    """
    scanner = MemoryScanner(
        index,
        patterns,
        pid=pid,
        vmas=vmas,
        context=context,
        chunk_size=chunk_size,
        max_hits=max_hits,
    )
    for chunk in iter_chunks(source, index, chunk_size):
        yield from scanner.feed(chunk)
    yield from scanner.finish()
    if not scanner.complete:
        raise ImageError(
            f"pages-{index.pages_id}.img holds {scanner.bytes_fed} of {index.present_bytes} bytes"
        )
