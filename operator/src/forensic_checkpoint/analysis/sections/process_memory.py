"""Per-process memory through the MEMORY engine: RSS, argv/environment and searches.

The pages of each process come from one of four places, cheapest first: the spooled bytes
of a small compressed archive, a seek into a plain tar, the archive's first pass as it
streams by (large compressed archives, ``MemoryPass.visit``), or, where the first pass could not
plan the work, a second streaming pass. Streamed pages feed every search and keep only the
argv/env byte ranges.
Observers (the findings' credential and YARA scans) are fed the same bytes as they go by,
so the pages are read once for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from forensic_checkpoint.analysis.format.archive import stream_members
from forensic_checkpoint.analysis.format.contents import ArchiveContents
from forensic_checkpoint.analysis.format.members import MemberInfo
from forensic_checkpoint.analysis.memory import (
    MemoryHit,
    MemoryScanner,
    PageIndex,
    Pagemap,
    Pattern,
    ProcessMemory,
    Vma,
    derive_page_size,
    parse_pagemap,
    rss_by_vma,
)
from forensic_checkpoint.analysis.model.report import (
    EnvVar,
    MemorySearch,
    Process,
    SearchMatch,
    SharedMemoryObject,
)
from forensic_checkpoint.analysis.sections.files import FileTable
from forensic_checkpoint.analysis.sections.processes import ProcessTree, provisional_tree
from forensic_checkpoint.analysis.sections.shared_memory import SharedObject, find_shared_objects
from forensic_checkpoint.errors import ImageError

_CHUNK = 8 << 20
#: argv/env areas larger than this are cut (a hostile mm.img could claim gigabytes)
MAX_ARG_AREA = 1 << 20
#: memfds are hashed up to this size; a streamed archive keeps at most this much in memory
MAX_HASHED_MEMFD = 64 << 20


class PagesObserver(Protocol):
    """Something that wants the bytes of one pages file in file order (the findings)."""

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


class ObserverFactory(Protocol):
    """Given the archive, its processes and shared memory objects, the observers wanted, by
    pages member name (``only``: just the one for that member)."""

    def __call__(
        self,
        contents: ArchiveContents,
        processes: Sequence[Process],
        shared: list[SharedMemoryObject],
        *,
        only: str | None = None,
    ) -> Mapping[str, PagesObserver]: ...


@dataclass
class _Task:
    """The pages of one process, or of one shared memory object (``shared``)."""

    proc: Process | None
    index: PageIndex
    pages_name: str
    vmas: list[Vma]
    arg_range: tuple[int, int] | None = None
    env_range: tuple[int, int] | None = None
    scanner: MemoryScanner | None = None
    shared: SharedObject | None = None
    observer: PagesObserver | None = None
    #: the pages were read in the archive's first pass (``MemoryPass.visit``), with these hits
    prefed: bool = False
    hits: list[MemoryHit] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.shared is not None:
            return f"shared memory object {self.shared.info.shmid}"
        return f"pid {self.proc.pid}" if self.proc else "?"


@dataclass
class MemoryResult:
    searches: list[MemorySearch] = field(default_factory=list)
    page_size: int = 4096
    shared: list[SharedMemoryObject] = field(default_factory=list)


def _range(start: int, end: int) -> tuple[int, int] | None:
    if end <= start:
        return None
    return start, min(end, start + MAX_ARG_AREA)


def parsed_pagemap(
    contents: ArchiveContents, name: str, cache: dict[str, Pagemap] | None = None
) -> Pagemap | None:
    """The pagemap image ``name`` decoded (None if absent), once per ``cache``: the first pass
    plans each pages member as it arrives, and must not decode every pagemap each time."""
    if cache is not None and name in cache:
        return cache[name]
    blob = contents.data.get(name)
    if blob is None:
        return None
    pagemap = parse_pagemap(blob)
    if cache is not None:
        cache[name] = pagemap
    return pagemap


def _tasks(
    contents: ArchiveContents,
    tree: ProcessTree,
    warnings: list[str],
    *,
    only: str | None = None,
    cache: dict[str, Pagemap] | None = None,
) -> list[_Task]:
    """The tasks of the tree's processes; ``only``: just those whose pages are that member."""
    sizes = {m.name: m.size for m in contents.members}
    tasks = []
    for proc in tree.processes:
        images = tree.tasks.get(proc.pid)
        name = f"checkpoint/pagemap-{proc.pid}.img"
        if images is None or images.mm is None or name not in contents.data:
            continue
        try:
            pagemap = parsed_pagemap(contents, name, cache)
            if pagemap is None:
                continue
            pages_name = f"checkpoint/pages-{pagemap.pages_id}.img"
            if only is not None and pages_name != only:
                continue
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


def _shared_tasks(
    contents: ArchiveContents,
    objects: dict[int, SharedObject],
    warnings: list[str],
    *,
    only: str | None = None,
    cache: dict[str, Pagemap] | None = None,
) -> list[_Task]:
    sizes = {m.name: m.size for m in contents.members}
    tasks = []
    for shmid, obj in sorted(objects.items()):
        try:
            pagemap = parsed_pagemap(contents, f"checkpoint/pagemap-shmem-{shmid}.img", cache)
            if pagemap is None:
                continue
            pages_name = f"checkpoint/pages-{pagemap.pages_id}.img"
            if only is not None and pages_name != only:
                continue
            if pages_name not in sizes:
                warnings.append(f"{pages_name} (shared memory {shmid}) is not in the archive")
                continue
            index = PageIndex.build(pagemap, derive_page_size(sizes[pages_name], pagemap))
        except ImageError as exc:
            warnings.append(f"shared memory object {shmid}: {exc.message}")
            continue
        obj.info.dumped_bytes = index.present_bytes
        tasks.append(_Task(proc=None, index=index, pages_name=pages_name, vmas=[], shared=obj))
    return tasks


def _hash_memfd(task: _Task, memory: ProcessMemory) -> None:
    """sha256 of a memfd's content, when every page of it is in the dump."""
    info = task.shared.info if task.shared else None
    if info is None or info.kind != "memfd" or not info.size_bytes:
        return
    if info.size_bytes > MAX_HASHED_MEMFD:
        return
    import hashlib  # only memfds are hashed; a search of plain processes skips OpenSSL set-up

    sha = hashlib.sha256()
    for offset in range(0, info.size_bytes, 1 << 20):
        piece = memory.try_read(offset, min(1 << 20, info.size_bytes - offset))
        if piece is None:
            return
        sha.update(piece)
    info.sha256 = sha.hexdigest()


def _account(task: _Task, pagemap_pages: int) -> None:
    proc, index = task.proc, task.index
    if proc is None:
        return
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
    if proc is None:
        return
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


def _scanner(
    task: _Task,
    patterns: list[Pattern],
    *,
    streamed: bool,
    read_args: bool,
    context: int,
    max_matches: int,
) -> MemoryScanner | None:
    """A scanner for searches, or to keep argv/env and memfd bytes of pages that are streamed
    (random reads are impossible there); None when the pages need no scan."""
    if not patterns and not (streamed and (read_args or task.shared is not None)):
        return None
    retain = [r for r in (task.arg_range, task.env_range) if r] if read_args else []
    size = task.shared.info.size_bytes if task.shared is not None else None
    if size and size <= MAX_HASHED_MEMFD:
        retain = [(0, size)]
    return MemoryScanner(
        task.index,
        patterns,
        pid=task.proc.pid if task.proc else None,
        vmas=task.vmas,
        context=context,
        chunk_size=_CHUNK,
        max_hits=max_matches,
        retain=retain,
    )


class MemoryPass:
    """The memory work of one analysis: searches, argv/environment, shared memory objects,
    and the observers' (the findings') view of every page.

    Made before the archive pass, whose ``pages_visitor`` is ``visit``: a large compressed
    archive's pages members arrive there while the archive streams by. Every engine writes the
    pagemap, mm, core, ids and fdinfo images before the pages, but pstree.img after them, so
    that work is planned from ``provisional_tree`` (one process per mm image, built by the same
    code as the real tree). ``run`` then adopts a pages file's scanner and hits only where the
    real tree has the same process or object, and reads anything else as before.
    """

    def __init__(
        self,
        *,
        searches: list[str],
        regexes: list[str],
        read_args: bool,
        context: int,
        max_matches: int,
        observe: ObserverFactory | None = None,
    ) -> None:
        self._patterns = _patterns(searches, regexes)
        self._n_literal = sum(1 for s in searches if s)  # _patterns skips empty literals
        self._read_args, self._context, self._max_matches = read_args, context, max_matches
        self._observe = observe
        self._plan: tuple[ProcessTree, dict[int, SharedObject]] | None = None
        self._pagemaps: dict[str, Pagemap] = {}  # decoded once for all the pages members
        #: pages member -> its task, fed to the end
        self.fed: dict[str, _Task] = {}

    def visit(self, member: MemberInfo, stream: IO[bytes], contents: ArchiveContents) -> None:
        task = self._task(member.name, contents)
        if task is None:
            return  # the second pass reads it
        failed_read: list[BaseException] = []

        def chunks() -> Iterator[bytes]:
            while True:
                try:
                    data = stream.read(_CHUNK)
                except BaseException as exc:
                    failed_read.append(exc)
                    raise
                if not data:
                    return
                yield data

        try:
            task.hits = _feed(task, chunks())
        except Exception:
            if failed_read:
                raise  # the archive itself is damaged: scan_archive reports it
            return  # our failure on these bytes: the second pass reads them again
        self.fed[member.name] = task

    def run(
        self, contents: ArchiveContents, tree: ProcessTree, table: FileTable, warnings: list[str]
    ) -> MemoryResult:
        """All the memory work after the archive pass: what the first pass did is adopted,
        the rest of the pages is read (by seeking, from the spool or in a second pass)."""
        result = MemoryResult()
        patterns = self._patterns
        tasks = _tasks(contents, tree, warnings, cache=self._pagemaps)
        if tasks:
            result.page_size = tasks[0].index.page_size
        objects = find_shared_objects(contents.data, table, tree)
        result.shared = [o.info for _, o in sorted(objects.items())]
        tasks += _shared_tasks(contents, objects, warnings, cache=self._pagemaps)
        observers = self._observe(contents, tree.processes, result.shared) if self._observe else {}
        hits: list[MemoryHit] = []
        counts = [0] * len(patterns)
        for task in tasks:
            done = self._adopt(task)
            if done is not None:
                task.scanner, task.hits, task.prefed = done.scanner, done.hits, True
                hits.extend(task.hits)
                continue
            task.observer = observers.get(task.pages_name)
            task.scanner = _scanner(
                task,
                patterns,
                streamed=not _direct(contents, task),
                read_args=self._read_args,
                context=self._context,
                max_matches=self._max_matches,
            )
        # Pages are read for a scanner (searches; argv/env of a streamed archive) or an observer.
        read = [
            t for t in tasks if not t.prefed and (t.scanner is not None or t.observer is not None)
        ]
        streamed = [t for t in read if not _direct(contents, t)]
        for task in read:
            if task not in streamed:
                hits.extend(_feed(task, _direct_chunks(contents, task)))
        if streamed:
            hits.extend(_second_pass(contents.path, streamed))
        for task in tasks:
            hits.extend(_finish(task, counts, warnings))
        for task in tasks:
            if not self._read_args and task.shared is None:
                continue
            memory = (
                task.scanner.retained()
                if task.scanner is not None and (task.prefed or task in streamed)
                else _direct_memory(contents, task)
            )
            if memory is not None:
                _fill_args(task, memory, warnings)
                _hash_memfd(task, memory)
        shared_by_pages = {t.pages_name: t.shared for t in tasks if t.shared is not None}
        result.searches = _searches(
            patterns,
            self._n_literal,
            hits,
            counts=counts,
            shared=shared_by_pages,
            max_matches=self._max_matches,
        )
        return result

    def _adopt(self, task: _Task) -> _Task | None:
        """This pass's work on ``task``'s pages, if it was done for the same owner."""
        done = self.fed.get(task.pages_name)
        if done is None:
            return None
        same = (
            (done.proc.pid if done.proc else None) == (task.proc.pid if task.proc else None)
            and (done.shared.info.shmid if done.shared else None)
            == (task.shared.info.shmid if task.shared else None)
            and done.index.runs == task.index.runs
        )
        return done if same else None

    def _task(self, name: str, contents: ArchiveContents) -> _Task | None:
        try:
            if self._plan is None:
                table = FileTable.load(contents.data, [])
                tree = provisional_tree(contents.data, table)
                self._plan = (tree, find_shared_objects(contents.data, table, tree))
            tree, objects = self._plan
            found = _tasks(contents, tree, [], only=name, cache=self._pagemaps)
            found += _shared_tasks(contents, objects, [], only=name, cache=self._pagemaps)
            if len(found) != 1:
                return None
            task = found[0]
            task.scanner = _scanner(
                task,
                self._patterns,
                streamed=True,
                read_args=self._read_args,
                context=self._context,
                max_matches=self._max_matches,
            )
            if self._observe is not None:
                shared = [o.info for _, o in sorted(objects.items())]
                observers = self._observe(contents, tree.processes, shared, only=name)
                task.observer = observers.get(name)
        except Exception:  # untrusted images: the second pass does the work instead
            return None
        return task


def _feed(task: _Task, chunks: Iterable[bytes]) -> list[MemoryHit]:
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
            f"{task.pages_name} is shorter than its pagemap says; memory of {task.label} is partial"
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
    # Fresh bytes per read, not one bytearray refilled in place: yara-x (the literal search of
    # large units) takes only bytes, and a copy would cost more than the allocation, which
    # malloc serves from memory the previous chunk freed.
    with contents.path.open("rb", buffering=0) as fh:
        fh.seek(member.offset_data)
        left = member.size
        while left > 0:
            data = fh.read(min(_CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


def _searches(
    patterns: list[Pattern],
    n_literal: int,
    hits: list[MemoryHit],
    *,
    counts: list[int],
    shared: dict[str, SharedObject],
    max_matches: int,
) -> list[MemorySearch]:
    out = [
        MemorySearch(pattern=p.text, kind="literal" if k < n_literal else "regex")
        for k, p in enumerate(patterns)
    ]
    for hit in sorted(hits, key=lambda h: (h.pattern_index, h.pid or 0, h.vaddr)):
        if len(out[hit.pattern_index].matches) >= max_matches:
            continue  # each process's scanner keeps max_matches; the report keeps them overall
        pid, vaddr = hit.pid or 0, hit.vaddr
        mapping = hit.vma.description if hit.vma else None
        obj = shared.get(f"checkpoint/pages-{hit.pages_id}.img") if hit.pid is None else None
        if obj is not None:
            pid, vaddr, mapping = obj.locate(hit.vaddr)
        out[hit.pattern_index].matches.append(
            SearchMatch(
                pid=pid,
                address=f"0x{vaddr:x}",
                mapping=mapping,
                context=_printable(hit.before + hit.match + hit.after),
                match=hit.match.decode("utf-8", "backslashreplace"),
            )
        )
    for k, search in enumerate(out):
        search.total_matches = counts[k]
        search.truncated = counts[k] > len(search.matches)
    return out
