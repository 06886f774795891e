"""Per-process memory through the MEMORY engine: RSS, argv/environment and searches.

The pages of each process come from one of three places, cheapest first: the spooled bytes
of a small compressed archive, a seek into a plain tar, or (large compressed archives) a
second streaming pass that feeds every search and keeps only the argv/env byte ranges.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from forensic_checkpoint.analysis.archive import ArchiveContents, MemberInfo, stream_members
from forensic_checkpoint.analysis.memory import (
    MemoryHit,
    MemoryScanner,
    PageIndex,
    Pattern,
    ProcessMemory,
    Vma,
    derive_page_size,
    parse_pagemap,
    rss_by_vma,
)
from forensic_checkpoint.analysis.processes import ProcessTree
from forensic_checkpoint.analysis.report import (
    EnvVar,
    MemorySearch,
    Process,
    SearchMatch,
)
from forensic_checkpoint.errors import ImageError

_CHUNK = 8 << 20
#: argv/env areas larger than this are cut (a hostile mm.img could claim gigabytes)
MAX_ARG_AREA = 1 << 20


@dataclass
class _Task:
    proc: Process
    index: PageIndex
    pages_name: str
    vmas: list[Vma]
    arg_range: tuple[int, int] | None = None
    env_range: tuple[int, int] | None = None
    memory: ProcessMemory | None = None
    scanner: MemoryScanner | None = None


@dataclass
class MemoryResult:
    searches: list[MemorySearch] = field(default_factory=list)
    page_size: int = 4096


def _range(start: int, end: int) -> tuple[int, int] | None:
    if end <= start:
        return None
    return start, min(end, start + MAX_ARG_AREA)


def _tasks(contents: ArchiveContents, tree: ProcessTree, warnings: list[str]) -> list[_Task]:
    sizes = {m.name: m.size for m in contents.members}
    tasks = []
    for proc in tree.processes:
        images = tree.tasks.get(proc.pid)
        name = f"checkpoint/pagemap-{proc.pid}.img"
        blob = contents.data.get(name)
        if images is None or images.mm is None or blob is None:
            continue
        try:
            pagemap = parse_pagemap(blob)
            pages_name = f"checkpoint/pages-{pagemap.pages_id}.img"
            if pages_name not in sizes:
                warnings.append(f"{pages_name} (memory of pid {proc.pid}) is not in the archive")
                continue
            page_size = derive_page_size(sizes[pages_name], pagemap)
            index = PageIndex.build(pagemap, page_size)
        except ImageError as exc:
            warnings.append(f"memory of pid {proc.pid}: {exc.message}")
            continue
        vmas = [
            Vma(
                int(m.start, 16),
                int(m.end, 16),
                f"{m.start}-{m.end} {m.perms} {m.name}",
            )
            for m in proc.maps
        ]
        mm = images.mm
        task = _Task(
            proc=proc,
            index=index,
            pages_name=pages_name,
            vmas=vmas,
            arg_range=_range(int(mm.mm_arg_start), int(mm.mm_arg_end)),
            env_range=_range(int(mm.mm_env_start), int(mm.mm_env_end)),
        )
        _account(task, pagemap_pages=sum(e.nr_pages for e in pagemap.entries))
        tasks.append(task)
    return tasks


def _account(task: _Task, pagemap_pages: int) -> None:
    proc, index = task.proc, task.index
    proc.rss_bytes = index.present_bytes
    proc.memory_size_bytes = pagemap_pages * index.page_size
    for rss, area in zip(rss_by_vma(index, task.vmas), proc.maps, strict=True):
        area.rss_bytes = rss.present_bytes


def _split(raw: bytes) -> list[str]:
    items = raw.split(b"\0")
    while items and items[-1] == b"":
        items.pop()
    return [i.decode("utf-8", "backslashreplace") for i in items]


def _fill_args(task: _Task, memory: ProcessMemory, warnings: list[str]) -> None:
    proc = task.proc
    if task.arg_range:
        raw = memory.try_read(task.arg_range[0], task.arg_range[1] - task.arg_range[0])
        if raw is None:
            warnings.append(f"argv of pid {proc.pid} is not in the dumped memory")
        else:
            proc.cmdline = _split(raw)
    if task.env_range:
        raw = memory.try_read(task.env_range[0], task.env_range[1] - task.env_range[0])
        if raw is None:
            warnings.append(f"environment of pid {proc.pid} is not in the dumped memory")
        else:
            # Entries without '=' happen (setproctitle rewrites the area); keep them as names.
            proc.env = [
                EnvVar(name=k, value=v) for k, _, v in (e.partition("=") for e in _split(raw))
            ]


def _patterns(searches: list[str], regexes: list[str]) -> list[Pattern]:
    from forensic_checkpoint.errors import ConfigError

    out = [Pattern.literal(s) for s in searches if s]
    for expr in regexes:
        try:
            out.append(Pattern.regex(expr))
        except ValueError as exc:
            raise ConfigError(f"--search-regex {expr!r}: {exc}") from exc
    return out


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


def analyze_memory(
    contents: ArchiveContents,
    tree: ProcessTree,
    *,
    searches: list[str],
    regexes: list[str],
    read_args: bool,
    context: int,
    max_matches: int,
    warnings: list[str],
) -> MemoryResult:
    result = MemoryResult()
    patterns = _patterns(searches, regexes)
    tasks = _tasks(contents, tree, warnings)
    if tasks:
        result.page_size = tasks[0].index.page_size
    hits: list[MemoryHit] = []
    counts = [0] * len(patterns)
    for task in tasks:
        if patterns or (read_args and not _direct(contents, task)):
            retain = [r for r in (task.arg_range, task.env_range) if r] if read_args else []
            task.scanner = MemoryScanner(
                task.index,
                patterns,
                pid=task.proc.pid,
                vmas=task.vmas,
                context=context,
                chunk_size=_CHUNK,
                max_hits=max_matches,
                retain=retain,
            )
    scanned = [t for t in tasks if t.scanner is not None]
    streamed = [t for t in scanned if not _direct(contents, t)]
    for task in scanned:
        if task not in streamed:
            hits.extend(_feed(task, _direct_chunks(contents, task)))
    if streamed:
        hits.extend(_second_pass(contents.path, streamed))
    for task in scanned:
        hits.extend(_finish(task, counts, warnings))
    if read_args:
        for task in tasks:
            memory = (
                task.scanner.retained()
                if task.scanner is not None and task in streamed
                else _direct_memory(contents, task)
            )
            if memory is not None:
                _fill_args(task, memory, warnings)
    result.searches = _searches(patterns, len(searches), hits, counts)
    return result


def _feed(task: _Task, chunks: Iterable[bytes]) -> list[MemoryHit]:
    scanner = task.scanner
    if scanner is None:
        return []
    hits: list[MemoryHit] = []
    for chunk in chunks:
        hits.extend(scanner.feed(chunk))
    return hits


def _second_pass(path: Path, streamed: list[_Task]) -> list[MemoryHit]:
    """Stream the archive again and feed each pages member to its process's scanner."""
    by_pages = {t.pages_name: t for t in streamed}
    wanted = set(by_pages)
    hits: list[MemoryHit] = []

    def visit(member: MemberInfo, stream: IO[bytes]) -> bool:
        hits.extend(_feed(by_pages[member.name], iter(lambda: stream.read(_CHUNK), b"")))
        wanted.discard(member.name)
        return bool(wanted)

    stream_members(path, lambda n: n in wanted, visit)
    return hits


def _finish(task: _Task, counts: list[int], warnings: list[str]) -> list[MemoryHit]:
    scanner = task.scanner
    if scanner is None:
        return []
    hits = scanner.finish()
    if not scanner.complete:
        warnings.append(
            f"{task.pages_name} is shorter than its pagemap says; memory of pid "
            f"{task.proc.pid} is partial"
        )
    for k, n in enumerate(scanner.counts):
        counts[k] += n
    return hits


def _direct(contents: ArchiveContents, task: _Task) -> bool:
    return task.pages_name in contents.spooled or contents.seekable


def _direct_memory(contents: ArchiveContents, task: _Task) -> ProcessMemory | None:
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


def _direct_chunks(contents: ArchiveContents, task: _Task) -> Iterator[bytes]:
    if task.pages_name in contents.spooled:
        yield contents.spooled[task.pages_name]
        return
    member = contents.member(task.pages_name)
    if member is None:
        return
    with contents.path.open("rb") as fh:
        fh.seek(member.offset_data)
        left = member.size
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _searches(
    patterns: list[Pattern], n_literal: int, hits: list[MemoryHit], counts: list[int]
) -> list[MemorySearch]:
    out = [
        MemorySearch(pattern=p.text, kind="literal" if k < n_literal else "regex")
        for k, p in enumerate(patterns)
    ]
    for hit in sorted(hits, key=lambda h: (h.pattern_index, h.pid or 0, h.vaddr)):
        out[hit.pattern_index].matches.append(
            SearchMatch(
                pid=hit.pid or 0,
                address=f"0x{hit.vaddr:x}",
                mapping=hit.vma.description if hit.vma else None,
                context=_printable(hit.before + hit.match + hit.after),
                match=hit.match.decode("utf-8", "backslashreplace"),
            )
        )
    for k, search in enumerate(out):
        search.total_matches = counts[k]
        search.truncated = counts[k] > len(search.matches)
    return out
