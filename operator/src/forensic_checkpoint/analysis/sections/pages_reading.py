"""Reading a task's pages, cheapest first: the spooled bytes of a small compressed archive, a
seek into a plain tar, or a second streaming pass over the archive."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from forensic_checkpoint.analysis.format.archive import stream_members
from forensic_checkpoint.analysis.format.contents import ArchiveContents
from forensic_checkpoint.analysis.format.members import MemberInfo
from forensic_checkpoint.analysis.memory import (
    MemoryHit,
    ProcessMemory,
)
from forensic_checkpoint.analysis.sections.memory_tasks import (
    MemoryTask,
)

CHUNK = 8 << 20


def feed(task: MemoryTask, chunks: Iterable[bytes]) -> list[MemoryHit]:
    scanner, observer = task.scanner, task.observer
    hits: list[MemoryHit] = []
    for chunk in chunks:
        if scanner is not None:
            hits.extend(scanner.feed(chunk))
        if observer is not None:
            observer.feed(chunk)
    if observer is not None:
        observer.finish()
    return hits


def second_pass(path: Path, streamed: list[MemoryTask]) -> list[MemoryHit]:
    """Stream the archive again and feed each pages member to its process's scanner."""
    by_pages = {t.pages_name: t for t in streamed}
    wanted = set(by_pages)
    hits: list[MemoryHit] = []

    def visit(member: MemberInfo, stream: IO[bytes]) -> bool:
        hits.extend(feed(by_pages[member.name], iter(lambda: stream.read(CHUNK), b"")))
        wanted.discard(member.name)
        return bool(wanted)

    stream_members(path, lambda n: n in wanted, visit)
    return hits


def finish_scan(task: MemoryTask, counts: list[int], warnings: list[str]) -> list[MemoryHit]:
    scanner = task.scanner
    if scanner is None:
        return []
    hits = scanner.finish()
    if not scanner.complete:
        warnings.append(
            f"{task.pages_name} is shorter than its pagemap says; memory of {task.label} is partial"
        )
    for k, n in enumerate(scanner.counts):
        counts[k] += n
    return hits


def reads_directly(contents: ArchiveContents, task: MemoryTask) -> bool:
    return task.pages_name in contents.spooled or contents.seekable


def direct_memory(contents: ArchiveContents, task: MemoryTask) -> ProcessMemory | None:
    if task.pages_name in contents.spooled:
        return ProcessMemory.from_bytes(task.index, contents.spooled[task.pages_name])
    member = contents.member(task.pages_name)
    if contents.seekable and member is not None:
        base = member.offset_data
        path = contents.path

        def read(at: int, size: int) -> bytes:
            with Path(path).open("rb") as fh:
                fh.seek(base + at)
                return fh.read(max(0, min(size, member.size - at)))

        return ProcessMemory(task.index, read)
    return None


def direct_chunks(contents: ArchiveContents, task: MemoryTask) -> Iterator[bytes]:
    if task.pages_name in contents.spooled:
        yield contents.spooled[task.pages_name]
        return
    member = contents.member(task.pages_name)
    if member is None:
        return
    # Fresh bytes per read, not one bytearray refilled in place: yara-x (the literal search of
    # large units) takes only bytes, and a copy would cost more than the allocation, which
    # malloc serves from memory the previous chunk freed.
    with contents.path.open("rb", buffering=0) as fh:
        fh.seek(member.offset_data)
        left = member.size
        while left > 0:
            data = fh.read(min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


def read_pages(
    contents: ArchiveContents, tasks: list[MemoryTask]
) -> tuple[list[MemoryHit], list[MemoryTask]]:
    """Feed the pages of every task that has a scanner or an observer and was not fed in the
    first pass: directly where possible, else in one second pass. (hits, the streamed tasks)"""
    # Pages are read for a scanner (searches; argv/env of a streamed archive) or an observer.
    read = [t for t in tasks if not t.prefed and (t.scanner is not None or t.observer is not None)]
    streamed = [t for t in read if not reads_directly(contents, t)]
    hits: list[MemoryHit] = []
    for task in read:
        if task not in streamed:
            hits.extend(feed(task, direct_chunks(contents, task)))
    if streamed:
        hits.extend(second_pass(contents.path, streamed))
    return hits, streamed
