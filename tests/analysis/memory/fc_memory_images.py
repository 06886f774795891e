"""Build CRIU images for memory tests from the formats, independently of the code under test.

Framing (pycriu images.py): u32 IMG_COMMON, u32 image magic, then records of u32 little-endian
length + protobuf payload. Messages come from Debian pycriu's generated classes; the CRIU 4.2
``nr_pages`` (field 5, uint64) is appended as raw wire bytes because pycriu 3.17 lacks it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pycriu.images import mm_pb2, pagemap_pb2
from tests.factories import criu_image, varint

frame = criu_image  # test_pagemap frames hostile records with it

PAGEMAP = 0x56084025
MM = 0x57492820
PE_PARENT, PE_LAZY, PE_PRESENT = 1, 2, 4


@dataclass(frozen=True)
class Entry:
    vaddr: int
    nr_pages: int
    flags: int | None = PE_PRESENT
    in_parent: bool | None = None


def pagemap_image(pages_id: int, entries: list[Entry], *, criu42: bool = True) -> bytes:
    """A pagemap image; ``criu42`` puts the count in field 5 and writes field 2 as 0, as CRIU
    4.2 does; otherwise only field 2 carries it (CRIU 3.x)."""
    records = [pagemap_pb2.pagemap_head(pages_id=pages_id).SerializeToString()]
    for e in entries:
        msg = pagemap_pb2.pagemap_entry(vaddr=e.vaddr, nr_pages=0 if criu42 else e.nr_pages)
        if e.flags is not None:
            msg.flags = e.flags
        if e.in_parent is not None:
            msg.in_parent = e.in_parent
        raw = msg.SerializeToString()
        if criu42:
            raw += b"\x28" + varint(e.nr_pages)
        records.append(raw)
    return frame(PAGEMAP, records)


def mm_image(vmas: list[tuple[int, int, int]]) -> bytes:
    """An mm image with VMAs (start, end, status); other mm fields are zero."""
    mm = mm_pb2.mm_entry(
        mm_start_code=0,
        mm_end_code=0,
        mm_start_data=0,
        mm_end_data=0,
        mm_start_stack=0,
        mm_start_brk=0,
        mm_brk=0,
        mm_arg_start=0,
        mm_arg_end=0,
        mm_env_start=0,
        mm_env_end=0,
        exe_file_id=0,
    )
    for start, end, status in vmas:
        mm.vmas.add(
            start=start, end=end, pgoff=0, shmid=0, prot=3, flags=0x22, status=status, fd=-1
        )
    return frame(MM, [mm.SerializeToString()])


@dataclass(frozen=True)
class Region:
    """Memory of a synthetic process: ``data`` at ``vaddr``; ``flags`` as in the pagemap."""

    vaddr: int
    data: bytes
    flags: int = PE_PRESENT


def build_process(
    regions: list[Region], *, page_size: int = 4096, pages_id: int = 1, criu42: bool = True
) -> tuple[bytes, bytes]:
    """(pagemap image, pages file): one entry per region, pages only for PE_PRESENT ones."""
    entries = []
    pages = bytearray()
    for r in regions:
        assert r.vaddr % page_size == 0 and len(r.data) % page_size == 0
        entries.append(Entry(r.vaddr, len(r.data) // page_size, r.flags))
        if r.flags & PE_PRESENT:
            pages += r.data
    return pagemap_image(pages_id, entries, criu42=criu42), bytes(pages)
