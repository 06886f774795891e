"""A task's memory areas from its mm image, named as /proc/PID/maps names them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from forensic_checkpoint.analysis.memory.vmas import (
    MAP_SHARED,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    VMA_ANON_SHARED,
    VMA_AREA_AIORING,
    VMA_AREA_HEAP,
    VMA_AREA_MEMFD,
    VMA_AREA_SOCKET,
    VMA_AREA_STACK,
    VMA_AREA_SYSVIPC,
    VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL,
    VMA_AREA_VVAR,
    VMA_FILE_PRIVATE,
    VMA_FILE_SHARED,
)
from forensic_checkpoint.analysis.model.process import MemoryMap
from forensic_checkpoint.analysis.sections.files import FileTable

#: (status flags, the area's name from its shmid) in the order they are tried; else "[anon]"
_NAMES: tuple[tuple[int, Callable[[int, FileTable], str]], ...] = (
    (VMA_AREA_STACK, lambda _shmid, _table: "[stack]"),
    (VMA_AREA_HEAP, lambda _shmid, _table: "[heap]"),
    (VMA_AREA_VDSO, lambda _shmid, _table: "[vdso]"),
    (VMA_AREA_VVAR, lambda _shmid, _table: "[vvar]"),
    (VMA_AREA_VSYSCALL, lambda _shmid, _table: "[vsyscall]"),
    (VMA_AREA_MEMFD | VMA_FILE_PRIVATE | VMA_FILE_SHARED, lambda shmid, table: table.path(shmid)),
    (VMA_AREA_SYSVIPC, lambda shmid, _table: f"SYSV{shmid:08x}"),
    (VMA_AREA_SOCKET, lambda shmid, _table: f"socket:{shmid}"),
    (VMA_AREA_AIORING, lambda _shmid, _table: "[aio]"),
    (VMA_ANON_SHARED, lambda _shmid, _table: "[anon:shared]"),
)


def _name(status: int, shmid: int, table: FileTable) -> str:
    for flags, name in _NAMES:
        if status & flags:
            return name(shmid, table)
    return "[anon]"


def memory_map(v: Any, table: FileTable) -> MemoryMap:
    prot = int(v.prot)
    name = _name(int(v.status), int(v.shmid), table)
    perms = (
        ("r" if prot & PROT_READ else "-")
        + ("w" if prot & PROT_WRITE else "-")
        + ("x" if prot & PROT_EXEC else "-")
        + ("s" if int(v.flags) & MAP_SHARED else "p")
    )
    return MemoryMap(
        start=f"0x{int(v.start):x}",
        end=f"0x{int(v.end):x}",
        size_bytes=int(v.end) - int(v.start),
        perms=perms,
        name=name,
        offset=int(v.pgoff),
        shared=bool(int(v.flags) & MAP_SHARED),
    )
