"""Shared memory objects: memfds, MAP_SHARED anonymous memory and SysV shared memory, dumped
once per object.

CRIU writes their pages to ``pagemap-shmem-<shmid>.img`` + a pages file, with "addresses"
that are offsets inside the object. A memfd is linked to its shmid through memfd.img; a VMA
maps a memfd through its files.img id and anonymous shared memory through the shmid itself.
A match inside such an object is reported at the address of a process that maps it, or at
its offset when the object is only held open (a memfd used for fileless execution), and names
every process that maps the object or holds it open (``pids``): each of them can read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from forensic_checkpoint.analysis.memory.vmas import (
    MAP_SHARED,
    VMA_ANON_SHARED,
    VMA_AREA_MEMFD,
    VMA_AREA_SYSVIPC,
)
from forensic_checkpoint.analysis.model.report import SharedMemoryObject
from forensic_checkpoint.analysis.sections.files import FileTable
from forensic_checkpoint.analysis.sections.processes import ProcessTree

SHMEM_PAGEMAP = re.compile(r"checkpoint/pagemap-shmem-(\d+)\.img")


@dataclass(frozen=True)
class Mapping:
    pid: int
    start: int
    end: int
    pgoff: int

    def vaddr(self, offset: int) -> int | None:
        if self.pgoff <= offset < self.pgoff + (self.end - self.start):
            return self.start + offset - self.pgoff
        return None


@dataclass
class SharedObject:
    info: SharedMemoryObject
    mappings: list[Mapping] = field(default_factory=list)
    holders: list[tuple[int, int]] = field(default_factory=list)

    def locate(self, offset: int) -> tuple[int, int, str]:
        """(pid, address, mapping label) for a byte of the object."""
        label = f"{self.info.kind} {self.info.name or self.info.shmid}"
        for m in self.mappings:
            vaddr = m.vaddr(offset)
            if vaddr is not None:
                return m.pid, vaddr, f"0x{m.start:x}-0x{m.end:x} {label} (shared)"
        pid = self.holders[0][0] if self.holders else (self.mappings[0].pid if self.mappings else 0)
        return pid, offset, f"{label}+0x{offset:x} (not mapped; address is the offset)"


def find_shared_objects(
    data: dict[str, bytes], table: FileTable, tree: ProcessTree
) -> dict[int, SharedObject]:
    """Every shmid with a pagemap-shmem image, described and linked to its users."""
    memfd_by_shmid = {int(e.shmid): e for e in table.memfd_inodes.values()}
    objects: dict[int, SharedObject] = {}
    for name in data:
        match = SHMEM_PAGEMAP.fullmatch(name)
        if match:
            shmid = int(match[1])
            memfd = memfd_by_shmid.get(shmid)
            objects[shmid] = SharedObject(
                info=SharedMemoryObject(
                    shmid=shmid,
                    kind="memfd" if memfd is not None else "anon-shared",
                    name=f"memfd:{memfd.name}" if memfd is not None else None,
                    size_bytes=int(memfd.size) if memfd is not None else None,
                )
            )
    if objects:
        inode_shmid = {inode: int(e.shmid) for inode, e in table.memfd_inodes.items()}
        _link_mappings(objects, table, tree, inode_shmid)
        _link_holders(objects, table, tree, inode_shmid)
    for obj in objects.values():
        obj.info.pids = sorted({m.pid for m in obj.mappings} | {pid for pid, _ in obj.holders})
    return objects


def _vma_shmid(
    vma: Any, table: FileTable, objects: dict[int, SharedObject], inode_shmid: dict[int, int]
) -> int | None:
    status, ref = int(vma.status), int(vma.shmid)
    if status & VMA_AREA_MEMFD:
        entry = table.entries.get(ref)  # memfd VMAs name their files.img entry
        if entry is not None and entry.HasField("memfd"):
            return inode_shmid.get(int(entry.memfd.inode_id))
        return None
    if (status & VMA_ANON_SHARED or int(vma.flags) & MAP_SHARED) and ref in objects:
        return ref
    return None


def _link_mappings(
    objects: dict[int, SharedObject],
    table: FileTable,
    tree: ProcessTree,
    inode_shmid: dict[int, int],
) -> None:
    for pid, task in sorted(tree.tasks.items()):
        for vma in task.mm.vmas if task.mm is not None else []:
            shmid = _vma_shmid(vma, table, objects, inode_shmid)
            if shmid is not None and shmid in objects:
                start, end = int(vma.start), int(vma.end)
                objects[shmid].mappings.append(Mapping(pid, start, end, int(vma.pgoff)))
                if int(vma.status) & VMA_AREA_SYSVIPC:  # shmat(): shmid is the SysV id
                    objects[shmid].info.kind = "sysv-shm"
                objects[shmid].info.used_by.append(f"{pid} 0x{start:x}-0x{end:x}")


def _link_holders(
    objects: dict[int, SharedObject],
    table: FileTable,
    tree: ProcessTree,
    inode_shmid: dict[int, int],
) -> None:
    for file_id, entry in table.entries.items():
        if not entry.HasField("memfd"):
            continue
        shmid = inode_shmid.get(int(entry.memfd.inode_id))
        if shmid is None or shmid not in objects:
            continue
        for holder in tree.fd_map.get(file_id, []):
            objects[shmid].holders.append((holder.pid, holder.fd))
            objects[shmid].info.used_by.append(f"{holder.pid} fd {holder.fd}")
