"""Virtual memory areas, for labelling search hits and counting RSS per mapping.

The analyzer decodes ``mm-<pid>.img`` itself and may pass its own labels as (start, end,
description) tuples; ``vmas_from_mm`` is the engine's own decoder for callers that have only the
image bytes.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Error as ProtobufError

from forensic_checkpoint.analysis.memory.pagemap import _body_offset
from forensic_checkpoint.errors import ImageError

MM_MAGIC = 0x57492820

# VMA status bits (criu/include/image.h).
VMA_AREA_STACK = 1 << 1
VMA_AREA_VSYSCALL = 1 << 2
VMA_AREA_VDSO = 1 << 3
VMA_AREA_HEAP = 1 << 5
VMA_FILE_PRIVATE = 1 << 6
VMA_FILE_SHARED = 1 << 7
VMA_ANON_SHARED = 1 << 8
VMA_ANON_PRIVATE = 1 << 9
VMA_AREA_SYSVIPC = 1 << 10
VMA_AREA_SOCKET = 1 << 11
VMA_AREA_VVAR = 1 << 12
VMA_AREA_AIORING = 1 << 13
VMA_AREA_MEMFD = 1 << 14
# mmap(2) protection and flag bits as CRIU stores them in VmaEntry.prot / .flags.
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED = 0x01

_LABELS = (
    (VMA_AREA_STACK, "[stack]"),
    (VMA_AREA_HEAP, "[heap]"),
    (VMA_AREA_VDSO, "[vdso]"),
    (VMA_AREA_VVAR, "[vvar]"),
    (VMA_AREA_VSYSCALL, "[vsyscall]"),
    (VMA_AREA_SYSVIPC, "sysvipc"),
    (VMA_AREA_SOCKET, "socket"),
    (VMA_AREA_MEMFD, "memfd"),
    (VMA_FILE_SHARED, "file (shared)"),
    (VMA_FILE_PRIVATE, "file"),
    (VMA_ANON_SHARED, "anon (shared)"),
    (VMA_ANON_PRIVATE, "anon"),
)


@dataclass(frozen=True, slots=True)
class Vma:
    """``[start, end)`` with a human label; CRIU fields kept for callers that need them."""

    start: int
    end: int
    description: str = ""
    prot: int = 0
    status: int = 0
    shmid: int = 0
    pgoff: int = 0

    def __contains__(self, vaddr: object) -> bool:
        return isinstance(vaddr, int) and self.start <= vaddr < self.end


VmaLike = Vma | tuple[int, int, str]


def describe_status(status: int, shmid: int = 0) -> str:
    """Short label for a VMA from CRIU's status bits (file VMAs name the files.img id)."""
    for bit, label in _LABELS:
        if status & bit:
            if bit in (VMA_FILE_PRIVATE, VMA_FILE_SHARED, VMA_AREA_MEMFD):
                return f"{label} #{shmid}"
            return label
    return "unknown"


def normalize_vmas(vmas: Iterable[VmaLike] | None) -> tuple[Vma, ...]:
    """Sorted ``Vma`` tuple from Vma objects or (start, end, description) tuples."""
    if vmas is None:
        return ()
    out = [v if isinstance(v, Vma) else Vma(int(v[0]), int(v[1]), str(v[2])) for v in vmas]
    out.sort(key=lambda v: v.start)
    return tuple(out)


def find_vma(vmas: Sequence[Vma], starts: Sequence[int], vaddr: int) -> Vma | None:
    """The VMA containing ``vaddr`` (``starts`` = the sorted start addresses)."""
    i = bisect.bisect_right(starts, vaddr) - 1
    if i >= 0 and vaddr < vmas[i].end:
        return vmas[i]
    return None


def vmas_from_mm(data: bytes) -> tuple[Vma, ...]:
    """Decode the VMAs of an ``mm-<pid>.img``. Raises ImageError on malformed input."""
    from forensic_checkpoint.analysis.format.criu_images import message_class

    # One message class, not the pycriu.images package (which imports all ~60 modules).
    mm_entry = message_class("mm_pb2", "mm_entry")
    pos = _body_offset(data, MM_MAGIC)
    if len(data) - pos < 4:
        raise ImageError("mm image has no record")
    (size,) = struct.unpack_from("<I", data, pos)
    pos += 4
    if pos + size > len(data):
        raise ImageError("mm record is truncated")
    mm = mm_entry()
    try:
        mm.ParseFromString(data[pos : pos + size])
    except ProtobufError as exc:
        raise ImageError("mm image does not decode") from exc
    return normalize_vmas(
        Vma(
            v.start,
            v.end,
            describe_status(v.status, v.shmid),
            prot=v.prot,
            status=v.status,
            shmid=v.shmid,
            pgoff=v.pgoff,
        )
        for v in mm.vmas
    )


def shmem_vaddrs(offset: int, vmas: Iterable[Vma]) -> list[tuple[Vma, int]]:
    """Where byte ``offset`` of a shared-memory object appears in a process.

    ``pagemap-shmem-<shmid>.img`` addresses the object by offset (its "vaddr" starts at 0), so
    a hit found there maps into every VMA of the object: ``vma.start + offset - vma.pgoff``.
    ``vmas`` are the VMAs that map this object (anonymous shared VMAs carry the shmid itself;
    memfd and SysV VMAs are resolved by the caller through files.img / memfd.img).
    """
    out = []
    for vma in vmas:
        rel = offset - vma.pgoff
        if 0 <= rel < vma.end - vma.start:
            out.append((vma, vma.start + rel))
    return out
