"""Bytes the findings need beyond the report: archive members read once more, and memory cut
into overlapping pieces.

The analyzer lists and hashes rootfs-diff.tar while streaming and keeps only small CRIU images;
findings also need what files say (a cron line, a key, YARA over a dropped binary), the tmpfs
contents CRIU saved (/dev/shm), and the pages. The pages normally come from the memory engine
as it reads them (``RunPieces`` takes its chunks). Members read here are read by offset from a
plain tar, from the analyzer's spool for small compressed archives, and otherwise in one more
streaming pass that visits every wanted member in archive order.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, cast

from forensic_checkpoint.analysis.format.archive import stream_members
from forensic_checkpoint.analysis.format.contents import DEFAULT_LIMITS, ArchiveContents
from forensic_checkpoint.analysis.format.members import ROOTFS_DIFF, MemberInfo
from forensic_checkpoint.analysis.format.streams import Readable
from forensic_checkpoint.analysis.memory import PageIndex, PresentRun
from forensic_checkpoint.analysis.sections.rootfs import iter_inner

#: files larger than this are not read (their sha256 is in the report already)
MAX_FILE_BYTES = 16 << 20
#: all file content kept for one analysis
MAX_TOTAL_BYTES = 128 << 20


def is_tmpfs(name: str) -> bool:
    """CRIU's tmpfs dumps (tmpfs-dev-<mnt>.tar.gz.img: /dev, /dev/shm, ...) and podman's
    devshm-checkpoint.tar."""
    base = name.rsplit("/", 1)[-1]
    return (name.startswith("checkpoint/") and base.startswith("tmpfs-")) or (
        name == "devshm-checkpoint.tar"
    )


@dataclass
class FileContents:
    #: rootfs-diff files by absolute path
    rootfs: dict[str, bytes] = field(default_factory=dict)
    #: tmpfs files as "<member>:<absolute path>"
    tmpfs: dict[str, bytes] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    budget: int = MAX_TOTAL_BYTES

    def read_inner(self, stream: Readable, into: dict[str, bytes], prefix: str = "") -> None:
        def visit(info: tarfile.TarInfo, path: str, data: IO[bytes] | None) -> bool:
            if data is None:
                return True
            if info.size > MAX_FILE_BYTES or info.size > self.budget:
                self.skipped.append(prefix + path)
                return True
            blob = data.read(info.size)
            self.budget -= len(blob)
            into[prefix + path] = blob
            return True

        iter_inner(cast(IO[bytes], stream), DEFAULT_LIMITS, visit)


class Window:
    """A file-like view of one member of a plain tar (no extraction, no copy of the rest)."""

    def __init__(self, fh: IO[bytes], offset: int, size: int) -> None:
        self._fh, self._pos, self._end = fh, offset, offset + size

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._pos
        want = left if size < 0 else min(size, left)
        self._fh.seek(self._pos)
        data = self._fh.read(want)
        self._pos += len(data)
        return data


def visit_members(
    contents: ArchiveContents, names: set[str], visit: Callable[[str, Readable], None]
) -> None:
    """Call ``visit(name, sequential stream)`` once for each of ``names`` that is present."""
    present = {m.name: m for m in contents.members if m.name in names and m.kind == "file"}
    streamed = set()
    for name, member in present.items():
        if name in contents.spooled:
            visit(name, io.BytesIO(contents.spooled[name]))
        elif contents.seekable:
            with contents.path.open("rb") as fh:
                visit(name, Window(fh, member.offset_data, member.size))
        else:
            streamed.add(name)
    if not streamed:
        return

    def on_member(member: MemberInfo, stream: IO[bytes]) -> bool:
        visit(member.name, stream)
        streamed.discard(member.name)
        return bool(streamed)

    stream_members(contents.path, lambda n: n in streamed, on_member)


def file_members(contents: ArchiveContents) -> set[str]:
    return {m.name for m in contents.members if m.name == ROOTFS_DIFF or is_tmpfs(m.name)}


def read_files(name: str, stream: Readable, out: FileContents) -> None:
    """Read one rootfs-diff or tmpfs member into ``out`` (called from ``visit_members``)."""
    if name == ROOTFS_DIFF:
        out.read_inner(stream, out.rootfs)
    elif is_tmpfs(name):
        try:
            out.read_inner(stream, out.tmpfs, prefix=f"{name}:")
        except (tarfile.TarError, OSError, EOFError) as exc:
            out.skipped.append(f"{name} ({type(exc).__name__})")


#: memory is handed out in pieces of at most this size (a run can be gigabytes); a piece
#: exists about twice at once (the chunks it was cut from, and the piece), so this bounds the
#: findings' memory work at a few tens of MiB whatever the archive size ...
PIECE = 16 << 20
#: ... that overlap by this much, so a match across a piece boundary is still whole in one
OVERLAP = 64 << 10


@dataclass(frozen=True)
class Piece:
    """Bytes of memory at ``vaddr`` (``file_offset`` in the pages file). The first ``seen``
    bytes were already in the previous piece of the same run: a match that ends inside
    them was seen there. ``last``: no further piece of this run follows (its last
    ``OVERLAP`` bytes will not be seen again)."""

    vaddr: int
    file_offset: int
    data: bytes
    seen: int = 0
    last: bool = True


class RunPieces:
    """Cuts a pages file, pushed in file order in chunks of any size, into the overlapping
    pieces of each run. The pieces depend only on the pagemap, never on the chunking, so the
    memory engine can hand the findings the chunks it reads anyway (one read of the pages).

    Chunks are referenced (not copied) until their piece is cut: a caller must not refill a
    chunk it has fed, which is why a ``bytearray`` is copied.
    """

    def __init__(self, index: PageIndex, *, piece: int = PIECE, overlap: int = OVERLAP) -> None:
        if not 0 <= overlap < piece:
            raise ValueError("the overlap must be shorter than a piece")
        self._runs = [r for r in sorted(index.runs, key=lambda r: r.file_offset) if r.size > 0]
        self._piece, self._overlap = piece, overlap
        self._i = 0  # current run
        self._pos = 0  # pages-file offset of the next byte fed
        self._done = 0  # bytes of the current run already in pieces
        self._tail = b""
        self._pending: list[memoryview] = []
        self._pending_len = 0

    @property
    def complete(self) -> bool:
        """Every run has been cut into pieces."""
        return self._i >= len(self._runs)

    def feed(self, data: bytes | bytearray) -> Iterator[Piece]:
        """The pieces completed by ``data``, one at a time: a consumer that drops each before
        taking the next holds one piece at once, not a chunk's worth of copies."""
        view = memoryview(bytes(data) if isinstance(data, bytearray) else data)
        at, n = 0, len(view)
        while at < n and self._i < len(self._runs):
            run = self._runs[self._i]
            if self._pos < run.file_offset:  # runs are contiguous; a gap means a damaged index
                skip = min(run.file_offset - self._pos, n - at)
                self._pos += skip
                at += skip
                continue
            want = self._want(run)
            take = min(want - self._pending_len, n - at)
            self._pending.append(view[at : at + take])
            self._pending_len += take
            self._pos += take
            at += take
            if self._pending_len == want:
                yield self._cut(run)

    def finish(self) -> Iterator[Piece]:
        """The end of the pages file: a run cut short (a truncated file) gives its last,
        short piece, as a short read would."""
        if self._pending_len and not self.complete:
            yield self._cut(self._runs[self._i])

    def _want(self, run: PresentRun) -> int:
        return min(self._piece - len(self._tail), run.size - self._done)

    def _cut(self, run: PresentRun) -> Piece:
        tail = self._tail
        whole = self._pending[0] if len(self._pending) == 1 and not tail else None
        if whole is not None and isinstance(whole.obj, bytes) and len(whole) == len(whole.obj):
            data = whole.obj  # the piece is one chunk as fed: no copy
        else:
            data = b"".join([tail, *self._pending])
        fresh = self._pending_len
        self._pending, self._pending_len = [], 0
        start = self._done - len(tail)
        self._done += fresh
        last = self._done >= run.size
        piece = Piece(run.vaddr + start, run.file_offset + start, data, seen=len(tail), last=last)
        if last:
            self._i, self._done, self._tail = self._i + 1, 0, b""
        else:
            self._tail = data[-self._overlap :] if self._overlap else b""
        return piece


def iter_runs(
    stream: Readable, index: PageIndex, *, piece: int = PIECE, overlap: int = OVERLAP
) -> Iterator[Piece]:
    """The present memory of one pages file, run by run and in overlapping pieces, reading
    ``stream`` once in file order; stops at a short read (a truncated pages file)."""
    pieces = RunPieces(index, piece=piece, overlap=overlap)
    while not pieces.complete and (chunk := stream.read(piece)):
        yield from pieces.feed(chunk)
    yield from pieces.finish()
