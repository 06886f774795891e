"""The memory work of an analysis, one task per pages file: which process or shared memory
object it belongs to, its page index, and what is taken from its memory (RSS per mapping,
argv/environment, a memfd's sha256)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from forensic_checkpoint.analysis.format.contents import ArchiveContents
from forensic_checkpoint.analysis.memory import (
    MemoryHit,
    MemoryScanner,
    PageIndex,
    Pagemap,
    ProcessMemory,
    Vma,
    derive_page_size,
    parse_pagemap,
    rss_by_vma,
)
from forensic_checkpoint.analysis.model.process import EnvVar, Process
from forensic_checkpoint.analysis.sections.cmdline import kernel_cmdline
from forensic_checkpoint.analysis.sections.processes import ProcessTree
from forensic_checkpoint.analysis.sections.shared_memory import SharedObject
from forensic_checkpoint.errors import ImageError

#: argv/env areas larger than this are cut (a hostile mm.img could claim gigabytes)
MAX_ARG_AREA = 1 << 20


#: memfds are hashed up to this size; a streamed archive keeps at most this much in memory
MAX_HASHED_MEMFD = 64 << 20


class PagesObserver(Protocol):
    """Something that wants the bytes of one pages file in file order (the findings)."""

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


@dataclass
class MemoryTask:
    """The pages of one process, or of one shared memory object (``shared``)."""

    proc: Process | None
    index: PageIndex
    pages_name: str
    vmas: list[Vma]
    arg_range: tuple[int, int] | None = None
    env_range: tuple[int, int] | None = None
    #: mm_arg_start, mm_arg_end, mm_env_start, mm_env_end (the kernel's cmdline rule needs all)
    mm_args: tuple[int, int, int, int] | None = None
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


@dataclass(frozen=True)
class IndexedPages:
    """A pagemap, the pages member it points at, and the index of that member's pages."""

    pagemap: Pagemap
    pages_name: str
    index: PageIndex


def indexed_pages(
    contents: ArchiveContents,
    pagemap_name: str,
    *,
    owner: tuple[str, str],
    warnings: list[str],
    wanted: Callable[[str], bool] = lambda _pages: True,
    cache: dict[str, Pagemap] | None = None,
) -> IndexedPages | None:
    """The pages behind ``pagemap_name``; None where there are none to read: no such pagemap,
    pages not ``wanted``, pages not in the archive or an image that does not decode (both
    warned about, naming ``owner``: how the two warnings name it, e.g. ("memory of pid 6",
    "memory of pid 6"))."""
    sizes = contents.member_sizes
    try:
        pagemap = parsed_pagemap(contents, pagemap_name, cache)
        if pagemap is None:
            return None
        pages_name = f"checkpoint/pages-{pagemap.pages_id}.img"
        if not wanted(pages_name):
            return None
        if pages_name not in sizes:
            warnings.append(f"{pages_name} ({owner[0]}) is not in the archive")
            return None
        index = PageIndex.build(pagemap, derive_page_size(sizes[pages_name], pagemap))
    except ImageError as exc:
        warnings.append(f"{owner[1]}: {exc.message}")
        return None
    return IndexedPages(pagemap, pages_name, index)


def _only(only: str | None) -> Callable[[str], bool]:
    return lambda pages: only is None or pages == only


def process_tasks(
    contents: ArchiveContents,
    tree: ProcessTree,
    warnings: list[str],
    *,
    only: str | None = None,
    cache: dict[str, Pagemap] | None = None,
) -> list[MemoryTask]:
    """The tasks of the tree's processes; ``only``: just those whose pages are that member."""
    tasks = []
    for proc in tree.processes:
        images = tree.tasks.get(proc.pid)
        name = f"checkpoint/pagemap-{proc.pid}.img"
        if images is None or images.mm is None or name not in contents.data:
            continue
        owner = f"memory of pid {proc.pid}"
        found = indexed_pages(
            contents,
            name,
            owner=(owner, owner),
            warnings=warnings,
            wanted=_only(only),
            cache=cache,
        )
        if found is None:
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
        task = MemoryTask(
            proc=proc,
            index=found.index,
            pages_name=found.pages_name,
            vmas=vmas,
            arg_range=_range(int(mm.mm_arg_start), int(mm.mm_arg_end)),
            env_range=_range(int(mm.mm_env_start), int(mm.mm_env_end)),
            mm_args=(
                int(mm.mm_arg_start),
                int(mm.mm_arg_end),
                int(mm.mm_env_start),
                int(mm.mm_env_end),
            ),
        )
        _account(task, pagemap_pages=sum(e.nr_pages for e in found.pagemap.entries))
        tasks.append(task)
    return tasks


def shared_tasks(
    contents: ArchiveContents,
    objects: dict[int, SharedObject],
    warnings: list[str],
    *,
    only: str | None = None,
    cache: dict[str, Pagemap] | None = None,
) -> list[MemoryTask]:
    """The tasks of the shared memory objects; ``only``: just the one whose pages are that
    member."""
    tasks = []
    for shmid, obj in sorted(objects.items()):
        found = indexed_pages(
            contents,
            f"checkpoint/pagemap-shmem-{shmid}.img",
            owner=(f"shared memory {shmid}", f"shared memory object {shmid}"),
            warnings=warnings,
            wanted=_only(only),
            cache=cache,
        )
        if found is None:
            continue
        obj.info.dumped_bytes = found.index.present_bytes
        tasks.append(
            MemoryTask(
                proc=None, index=found.index, pages_name=found.pages_name, vmas=[], shared=obj
            )
        )
    return tasks


def hash_memfd(task: MemoryTask, memory: ProcessMemory) -> None:
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


def _account(task: MemoryTask, pagemap_pages: int) -> None:
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


def fill_args(task: MemoryTask, memory: ProcessMemory, warnings: list[str]) -> None:
    proc = task.proc
    if proc is None:
        return
    if task.arg_range and task.mm_args:
        arg_start, arg_end, env_start, env_end = task.mm_args
        raw = kernel_cmdline(
            memory.try_read,
            arg_start=arg_start,
            arg_end=min(arg_end, task.arg_range[1]),
            env_start=env_start,
            env_end=env_end,
            page_size=task.index.page_size,
        )
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
