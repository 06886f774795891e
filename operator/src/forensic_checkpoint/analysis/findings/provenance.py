"""Binary provenance: every mapped ELF with its GNU build-id, and where the file came from.

The build-id is in files.img (``reg_file_entry.build_id``, five little-endian u32 words)
because CRIU validates files by build-id on restore; it equals ``readelf -n`` of the file
(verified on multi-proc.tar's libc, findings-research.md 0.3). A file written in the
container (rootfs-diff) or a memfd is not from the image, whatever its name says.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from forensic_checkpoint.analysis.memory import vmas_from_mm
from forensic_checkpoint.analysis.memory.vmas import (
    PROT_EXEC,
    VMA_AREA_MEMFD,
    VMA_FILE_PRIVATE,
    VMA_FILE_SHARED,
)
from forensic_checkpoint.analysis.model.findings import MappedBinary
from forensic_checkpoint.analysis.model.report import Report
from forensic_checkpoint.analysis.sections.files import FileTable
from forensic_checkpoint.errors import ImageError


def build_id_hex(words: list[int]) -> str | None:
    return struct.pack(f"<{len(words)}I", *words).hex() if words else None


def mapped_binaries(report: Report, images: Mapping[str, bytes]) -> list[MappedBinary]:
    table = FileTable.load(dict(images), [])
    found: dict[str, MappedBinary] = {}
    for proc in report.processes:
        blob = images.get(f"checkpoint/mm-{proc.pid}.img")
        if blob is None:
            continue
        try:
            vmas = vmas_from_mm(blob)
        except ImageError:
            continue
        for vma in vmas:
            if not vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED | VMA_AREA_MEMFD):
                continue
            entry = table.entries.get(vma.shmid)
            if entry is None:
                continue
            build_id = None
            size = None
            if entry.HasField("reg"):
                path = str(entry.reg.name)
                build_id = build_id_hex(list(entry.reg.build_id))
                size = int(entry.reg.size) if entry.reg.HasField("size") else None
            else:
                path = table.path(vma.shmid)
            executable = bool(vma.prot & PROT_EXEC)
            if build_id is None and not executable:
                continue  # data files (locale, caches) are not binaries
            item = found.get(path)
            if item is None:
                origin, sha = _origin(
                    report, table, path, vma.shmid, memfd=bool(vma.status & VMA_AREA_MEMFD)
                )
                item = found[path] = MappedBinary(
                    path=path, build_id=build_id, size_bytes=size, origin=origin, sha256=sha
                )
            if proc.pid not in item.pids:
                item.pids.append(proc.pid)
            item.executable_mapping |= executable
    return sorted(found.values(), key=lambda b: (b.origin == "image", b.path))


def _origin(
    report: Report, table: FileTable, path: str, file_id: int, *, memfd: bool
) -> tuple[str, str | None]:
    """Where a mapped file came from, and its sha256 when the archive holds its bytes."""
    changed = next((e for e in report.rootfs.changed if e.path == path), None)
    if changed is not None:
        return "rootfs-diff", changed.sha256
    if memfd or path.startswith("memfd:"):
        obj = next((o for o in report.shared_memory if o.name == path), None)
        return "memfd", obj.sha256 if obj else None
    if file_id in table.remaps or path in report.rootfs.deleted:
        return "deleted", None
    return "image", None
