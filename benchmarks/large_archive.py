"""Generate a checkpoint archive with more than 2 GiB of process memory, for benchmarks.

Starts from the real CRI-O sample (tests/data/counter-blog-crio.tar.zst) and grows pid 6
(python3, pages-2.img) by a new anonymous private mapping made of many contiguous pagemap
entries, inserted in vaddr order so the pagemap, the pages file and mm-6.img stay consistent.
Marker strings are planted at known addresses, many of them straddling page, 8 MiB and
pagemap-entry boundaries, so the benchmark also checks that every tool finds all of them.
The pages member is streamed into the tar: memory use stays small while writing.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard
from pycriu.images import mm_pb2, pagemap_pb2, vma_pb2

from forensic_checkpoint.analysis.memory import parse_pagemap

REPO = Path(__file__).resolve().parents[1]
BASE_SAMPLE = REPO / "tests" / "data" / "counter-blog-crio.tar.zst"
PID = 6
PAGE = 4096
MIB = 1 << 20
MAPPING_BASE = 0x7F5000000000  # between the sample's libraries and its stack
MARKER = b"BENCH_LARGE_MARKER_8c1e5d"
IMG_COMMON, PAGEMAP_MAGIC, MM_MAGIC = 0x54564319, 0x56084025, 0x57492820


@dataclass(frozen=True)
class LargeArchive:
    path: Path
    pid: int
    pages_member: str
    mapping_size: int
    marker: bytes
    marker_vaddrs: tuple[int, ...]


def _frame(magic: int, records: list[bytes]) -> bytes:
    out = bytearray(struct.pack("<II", IMG_COMMON, magic))
    for rec in records:
        out += struct.pack("<I", len(rec)) + rec
    return bytes(out)


def _varint(v: int) -> bytes:
    out = bytearray()
    while v > 0x7F:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _pagemap(pages_id: int, entries: list[tuple[int, int, int]]) -> bytes:
    """CRIU 4.2 layout: count in field 5, field 2 written as 0."""
    recs = [pagemap_pb2.pagemap_head(pages_id=pages_id).SerializeToString()]
    for vaddr, nr, flags in entries:
        raw = pagemap_pb2.pagemap_entry(vaddr=vaddr, nr_pages=0, flags=flags).SerializeToString()
        recs.append(raw + b"\x28" + _varint(nr))
    return _frame(PAGEMAP_MAGIC, recs)


def _mm_with_mapping(data: bytes, start: int, end: int) -> bytes:
    (size,) = struct.unpack_from("<I", data, 8)
    mm = mm_pb2.mm_entry()
    mm.ParseFromString(data[12 : 12 + size])
    vmas = sorted(
        [
            *mm.vmas,
            vma_pb2.vma_entry(
                start=start, end=end, pgoff=0, shmid=0, prot=3, flags=0x22, status=0x201, fd=-1
            ),
        ],
        key=lambda v: v.start,
    )
    del mm.vmas[:]
    mm.vmas.extend(vmas)
    return _frame(MM_MAGIC, [mm.SerializeToString()])


def marker_offsets(size: int, entry_size: int) -> list[int]:
    """Offsets in the mapping: straddling pages, 8 MiB chunks and entries, plus a regular grid."""
    n = len(MARKER)
    offsets = {0, size - n}
    for edge in range(entry_size, size, entry_size):
        offsets.add(edge - n // 2)  # straddles two pagemap entries (and 8 MiB chunks)
    for edge in range(8 * MIB, size, 8 * MIB):
        offsets.add(edge - 3)
    for k in range(1, size // (37 * MIB)):
        offsets.add(k * 37 * MIB + 11 * PAGE - 7)  # straddles a page
    out, last = [], -n
    for off in sorted(offsets):
        if off >= last + n:
            out.append(off)
            last = off
    return out


class _MappingReader(io.RawIOBase):
    """The new mapping's bytes, produced on demand: a random block repeated, markers planted."""

    def __init__(self, size: int, offsets: list[int]) -> None:
        self._size, self._pos = size, 0
        self._block = os.urandom(16 * MIB)
        self._offsets = offsets

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), self._size - self._pos)
        if n <= 0:
            return 0
        out = memoryview(b)[:n]
        done = 0
        while done < n:
            at = (self._pos + done) % len(self._block)
            step = min(n - done, len(self._block) - at)
            out[done : done + step] = self._block[at : at + step]
            done += step
        lo, hi = self._pos, self._pos + n
        for off in self._offsets:
            end = off + len(MARKER)
            if end > lo and off < hi:
                s, e = max(off, lo), min(end, hi)
                out[s - lo : e - lo] = MARKER[s - off : e - off]
        self._pos += n
        return n


def _chain(parts: list[io.RawIOBase | io.BytesIO]) -> Iterator[io.RawIOBase | io.BytesIO]:
    yield from parts


class _Concat(io.RawIOBase):
    def __init__(self, parts: list[io.RawIOBase | io.BytesIO]) -> None:
        self._parts = _chain(parts)
        self._cur = next(self._parts, None)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        while self._cur is not None:
            n = self._cur.readinto(b)
            if n:
                return n
            self._cur = next(self._parts, None)
        return 0


def generate(out_dir: Path, *, size: int = 2112 * MIB, entry_size: int = 64 * MIB) -> LargeArchive:
    """Write ``large.tar`` into ``out_dir`` (the caller deletes it)."""
    with BASE_SAMPLE.open("rb") as raw:
        base = zstandard.ZstdDecompressor().stream_reader(raw).read()
    with tarfile.open(fileobj=io.BytesIO(base)) as src:
        members = src.getmembers()
        blobs = {m.name: src.extractfile(m).read() for m in members if m.isfile()}  # type: ignore[union-attr]

    pm = parse_pagemap(blobs[f"checkpoint/pagemap-{PID}.img"])
    pages_member = f"checkpoint/pages-{pm.pages_id}.img"
    old_pages = blobs[pages_member]
    before = [e for e in pm.entries if e.vaddr < MAPPING_BASE]
    after = [e for e in pm.entries if e.vaddr >= MAPPING_BASE]
    split = sum(e.nr_pages for e in before if e.present) * PAGE
    new = [(MAPPING_BASE + off, entry_size // PAGE, 4) for off in range(0, size, entry_size)]
    entries = [(e.vaddr, e.nr_pages, e.flags) for e in before] + new
    entries += [(e.vaddr, e.nr_pages, e.flags) for e in after]
    blobs[f"checkpoint/pagemap-{PID}.img"] = _pagemap(pm.pages_id, entries)
    blobs[f"checkpoint/mm-{PID}.img"] = _mm_with_mapping(
        blobs[f"checkpoint/mm-{PID}.img"], MAPPING_BASE, MAPPING_BASE + size
    )
    offsets = marker_offsets(size, entry_size)

    path = out_dir / "large.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as out:
        for m in members:
            if not m.isfile():
                out.addfile(m)
                continue
            info = tarfile.TarInfo(m.name)
            info.mode, info.mtime, info.uid, info.gid = m.mode, m.mtime, m.uid, m.gid
            if m.name == pages_member:
                info.size = len(old_pages) + size
                stream = _Concat(
                    [
                        io.BytesIO(old_pages[:split]),
                        _MappingReader(size, offsets),
                        io.BytesIO(old_pages[split:]),
                    ]
                )
                out.addfile(info, io.BufferedReader(stream, 8 * MIB))  # type: ignore[type-var]
            else:
                info.size = len(blobs[m.name])
                out.addfile(info, io.BytesIO(blobs[m.name]))
    return LargeArchive(
        path, PID, pages_member, size, MARKER, tuple(MAPPING_BASE + o for o in offsets)
    )
