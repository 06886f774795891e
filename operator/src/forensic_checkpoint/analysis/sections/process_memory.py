"""Per-process memory through the memory engine (``analysis.memory``): RSS, argv/environment
and searches.

The pages of each process come from one of four places, cheapest first: the spooled bytes
of a small compressed archive, a seek into a plain tar, the archive's first pass as it
streams by (large compressed archives, ``MemoryPass.visit``), or, where the first pass could not
plan the work, a second streaming pass (``pages_reading``). Streamed pages feed every search
and keep only the argv/env byte ranges. Each pages file is one task (``memory_tasks``).
Observers (the findings' credential and YARA scans) are fed the same bytes as they go by,
so the pages are read once for both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol

from forensic_checkpoint.analysis.format.contents import ArchiveContents
from forensic_checkpoint.analysis.format.members import MemberInfo
from forensic_checkpoint.analysis.memory import (
    MemoryHit,
    MemoryScanner,
    Pagemap,
    Pattern,
)
from forensic_checkpoint.analysis.model.process import Process
from forensic_checkpoint.analysis.model.report import MemorySearch, SearchMatch, SharedMemoryObject
from forensic_checkpoint.analysis.sections.files import FileTable
from forensic_checkpoint.analysis.sections.memory_tasks import (
    MAX_HASHED_MEMFD,
    MemoryTask,
    PagesObserver,
    fill_args,
    hash_memfd,
    process_tasks,
    shared_tasks,
)
from forensic_checkpoint.analysis.sections.pages_reading import (
    CHUNK,
    direct_memory,
    feed,
    finish_scan,
    read_pages,
    reads_directly,
)
from forensic_checkpoint.analysis.sections.processes import ProcessTree, provisional_tree
from forensic_checkpoint.analysis.sections.shared_memory import SharedObject, find_shared_objects


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
class MemoryResult:
    searches: list[MemorySearch] = field(default_factory=list)
    page_size: int = 4096
    shared: list[SharedMemoryObject] = field(default_factory=list)


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
    task: MemoryTask,
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
        chunk_size=CHUNK,
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
        self.fed: dict[str, MemoryTask] = {}

    def visit(self, member: MemberInfo, stream: IO[bytes], contents: ArchiveContents) -> None:
        task = self._task(member.name, contents)
        if task is None:
            return  # the second pass reads it
        failed_read: list[BaseException] = []

        def chunks() -> Iterator[bytes]:
            while True:
                try:
                    data = stream.read(CHUNK)
                except BaseException as exc:
                    failed_read.append(exc)
                    raise
                if not data:
                    return
                yield data

        try:
            task.hits = feed(task, chunks())
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
        tasks = process_tasks(contents, tree, warnings, cache=self._pagemaps)
        if tasks:
            result.page_size = tasks[0].index.page_size
        objects = find_shared_objects(contents.data, table, tree)
        result.shared = [o.info for _, o in sorted(objects.items())]
        tasks += shared_tasks(contents, objects, warnings, cache=self._pagemaps)
        observers = self._observe(contents, tree.processes, result.shared) if self._observe else {}
        hits = self._prepare(contents, tasks, observers)
        read, streamed = read_pages(contents, tasks)
        hits.extend(read)
        counts = [0] * len(self._patterns)
        for task in tasks:
            hits.extend(finish_scan(task, counts, warnings))
        self._fill(contents, tasks, streamed, warnings)
        shared_by_pages = {t.pages_name: t.shared for t in tasks if t.shared is not None}
        result.searches = _searches(
            self._patterns,
            self._n_literal,
            hits,
            counts=counts,
            shared=shared_by_pages,
            max_matches=self._max_matches,
        )
        return result

    def _prepare(
        self,
        contents: ArchiveContents,
        tasks: list[MemoryTask],
        observers: Mapping[str, PagesObserver],
    ) -> list[MemoryHit]:
        """Adopt what the first pass did (its hits are returned); give every other task its
        scanner and observer."""
        hits: list[MemoryHit] = []
        for task in tasks:
            done = self._adopt(task)
            if done is not None:
                task.scanner, task.hits, task.prefed = done.scanner, done.hits, True
                hits.extend(task.hits)
                continue
            task.observer = observers.get(task.pages_name)
            task.scanner = self._scanner(task, streamed=not reads_directly(contents, task))
        return hits

    def _scanner(self, task: MemoryTask, *, streamed: bool) -> MemoryScanner | None:
        return _scanner(
            task,
            self._patterns,
            streamed=streamed,
            read_args=self._read_args,
            context=self._context,
            max_matches=self._max_matches,
        )

    def _fill(
        self,
        contents: ArchiveContents,
        tasks: list[MemoryTask],
        streamed: list[MemoryTask],
        warnings: list[str],
    ) -> None:
        """argv/environment of the processes and memfd hashes, from the bytes the scanners
        retained (streamed pages) or read directly."""
        for task in tasks:
            if not self._read_args and task.shared is None:
                continue
            memory = (
                task.scanner.retained()
                if task.scanner is not None and (task.prefed or task in streamed)
                else direct_memory(contents, task)
            )
            if memory is not None:
                fill_args(task, memory, warnings)
                hash_memfd(task, memory)

    def _adopt(self, task: MemoryTask) -> MemoryTask | None:
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

    def _task(self, name: str, contents: ArchiveContents) -> MemoryTask | None:
        try:
            if self._plan is None:
                table = FileTable.load(contents.data, [])
                tree = provisional_tree(contents.data, table)
                self._plan = (tree, find_shared_objects(contents.data, table, tree))
            tree, objects = self._plan
            found = process_tasks(contents, tree, [], only=name, cache=self._pagemaps)
            found += shared_tasks(contents, objects, [], only=name, cache=self._pagemaps)
            if len(found) != 1:
                return None
            task = found[0]
            task.scanner = self._scanner(task, streamed=True)
            if self._observe is not None:
                shared = [o.info for _, o in sorted(objects.items())]
                observers = self._observe(contents, tree.processes, shared, only=name)
                task.observer = observers.get(name)
        except Exception:  # untrusted images: the second pass does the work instead
            return None
        return task


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
        readers: list[int] = []
        if obj is not None:
            pid, vaddr, mapping = obj.locate(hit.vaddr)
            readers = list(obj.info.pids)
        out[hit.pattern_index].matches.append(
            SearchMatch(
                pid=pid,
                address=f"0x{vaddr:x}",
                mapping=mapping,
                context=_printable(hit.before + hit.match + hit.after),
                match=hit.match.decode("utf-8", "backslashreplace"),
                shared_with=readers,
            )
        )
    for k, search in enumerate(out):
        search.total_matches = counts[k]
        search.truncated = counts[k] > len(search.matches)
    return out
