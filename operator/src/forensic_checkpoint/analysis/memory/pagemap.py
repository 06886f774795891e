"""Decode ``pagemap-<id>.img`` (process or shmem) with protobuf classes, bypassing pb2dict.

``pycriu.images.load`` turns every entry into a dict and takes seconds on big pagemaps, so the
records are parsed one by one with a message class. Debian's pycriu (3.17) predates CRIU 4.2,
which moved ``nr_pages`` to field 5 (uint64) and writes field 2 (now ``compat_nr_pages``) as 0.
The class used here is pycriu's ``pagemap_entry`` descriptor with field 5 added (embedded as
bytes, loaded once into a private descriptor pool), so both layouts decode without touching
unknown fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

from google.protobuf.message import Error as ProtobufError

from forensic_checkpoint.errors import ImageError

#: Pagemap entry flags (CRIU ``images/pagemap.proto`` / ``criu/include/pagemap.h``).
PE_PARENT = 1
PE_LAZY = 2
PE_PRESENT = 4

IMG_COMMON = 0x54564319
IMG_SERVICE = 0x55105940
PAGEMAP_MAGIC = 0x56084025

_U32 = struct.Struct("<I")


class PagemapEntry(NamedTuple):
    """One run of pages: ``nr_pages`` pages from ``vaddr``; ``flags`` already normalised.

    Legacy entries are normalised as CRIU's ``init_compat_pagemap_entry`` does: ``in_parent``
    becomes ``PE_PARENT``, an entry without flags is ``PE_PRESENT``. A NamedTuple, because
    pagemaps reach millions of entries and tuples are the cheapest record to build.
    """

    vaddr: int
    nr_pages: int
    flags: int

    @property
    def present(self) -> bool:
        """Bytes are in the pages file (``PE_LAZY|PE_PRESENT`` counts as present)."""
        return bool(self.flags & PE_PRESENT)


@dataclass(frozen=True, slots=True)
class Pagemap:
    """A decoded pagemap image: the pages file id and the entries in file (vaddr) order."""

    pages_id: int
    entries: tuple[PagemapEntry, ...]

    @property
    def present_pages(self) -> int:
        """Pages stored in ``pages-<pages_id>.img``; used to derive the page size."""
        return sum(e.nr_pages for e in self.entries if e.flags & PE_PRESENT)


#: Serialized ``FileDescriptorProto`` of the private ``pagemap42.proto``: pycriu's
#: ``pagemap.proto`` with every field optional (the parser checks presence with CRIU's rules),
#: CRIU's display options dropped, field 2 renamed ``compat_nr_pages`` and CRIU 4.2's field 5
#: (uint64 ``nr_pages``) added. Kept as bytes so that decoding a pagemap imports neither
#: ``descriptor_pb2`` nor the ``pycriu`` package (together ~50 ms, which is a quarter of a
#: whole search process); a test rebuilds it from pycriu's own descriptor.
PAGEMAP42_PROTO = (
    b'\n#forensic_checkpoint/pagemap42.proto\x12\x1dforensic_checkpoint.pagemap42" \n'
    b'\x0cpagemap_head\x12\x10\n\x08pages_id\x18\x01 \x01(\r"k\n\rpagemap_entry\x12\r\n'
    b"\x05vaddr\x18\x01 \x01(\x04\x12\x17\n\x0fcompat_nr_pages\x18\x02 \x01(\r\x12\x11\n"
    b"\tin_parent\x18\x03 \x01(\x08\x12\r\n\x05flags\x18\x04 \x01(\r\x12\x10\n\x08nr_pages"
    b"\x18\x05 \x01(\x04"
)
PAGEMAP42_PACKAGE = "forensic_checkpoint.pagemap42"


@cache
def _message_classes() -> tuple[type[Any], type[Any]]:
    """Return (pagemap_head, pagemap_entry) classes that know CRIU 4.2's field 5."""
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() == "upb":
        # A class straight from a upb pool, without importing the pure-Python
        # descriptor_pool/message_factory machinery (~25 ms of a short search process).
        from google._upb import _message as upb
        from google.protobuf.message import Message

        pool: Any = upb.DescriptorPool()
        pool.AddSerializedFile(PAGEMAP42_PROTO)

        def build(name: str) -> type[Any]:
            descriptor = pool.FindMessageTypeByName(f"{PAGEMAP42_PACKAGE}.{name}")
            namespace = {"DESCRIPTOR": descriptor, "__module__": __name__}
            cls: type[Any] = upb.MessageMeta(name, (Message,), namespace)
            return cls

    else:  # the pure-Python backend: its own public API
        from google.protobuf import descriptor_pool, message_factory

        pool = descriptor_pool.DescriptorPool()
        pool.AddSerializedFile(PAGEMAP42_PROTO)

        def build(name: str) -> type[Any]:
            descriptor = pool.FindMessageTypeByName(f"{PAGEMAP42_PACKAGE}.{name}")
            cls: type[Any] = message_factory.GetMessageClass(descriptor)
            return cls

    return build("pagemap_head"), build("pagemap_entry")


def _body_offset(data: bytes | memoryview, expected: int) -> int:
    """Check the image magic(s) and return where the first record starts."""
    if len(data) < 4:
        raise ImageError("image too short for a magic")
    (first,) = _U32.unpack_from(data, 0)
    offset = 4
    if first in (IMG_COMMON, IMG_SERVICE):
        if len(data) < 8:
            raise ImageError("image too short for a magic")
        (first,) = _U32.unpack_from(data, 4)
        offset = 8
    if first != expected:
        raise ImageError(f"unexpected image magic 0x{first:08x}, wanted 0x{expected:08x}")
    return offset


def _parse_head(view: memoryview) -> tuple[int, int]:
    """Return (pages_id, offset of the first entry record)."""
    head_cls, _ = _message_classes()
    pos = _body_offset(view, PAGEMAP_MAGIC)
    if len(view) - pos < 4:
        raise ImageError("pagemap has no head record")
    (size,) = _U32.unpack_from(view, pos)
    pos += 4
    if pos + size > len(view):
        raise ImageError("pagemap head record is truncated")
    head = head_cls()
    try:
        head.ParseFromString(view[pos : pos + size])
    except ProtobufError as exc:
        raise ImageError("pagemap head does not decode") from exc
    if not head.HasField("pages_id"):
        raise ImageError("pagemap head has no pages_id")
    return head.pages_id, pos + size


def parse_pagemap(data: bytes) -> Pagemap:
    """Decode a whole ``pagemap-*.img`` (``pagemap-shmem-*.img`` too).

    Raises ImageError (and nothing else) for any malformed input: bad magic, truncated record,
    undecodable protobuf, missing ``pages_id`` / ``vaddr`` / page count, or entries that are not
    in ascending, non-overlapping vaddr order (the page index relies on that order).
    """
    _, entry_cls = _message_classes()
    view = memoryview(data)
    end = len(view)
    pages_id, pos = _parse_head(view)
    entries: list[PagemapEntry] = []
    append = entries.append
    msg = entry_cls()
    parse = msg.ParseFromString
    has = msg.HasField
    unpack = _U32.unpack_from
    while pos < end:
        if end - pos < 4:
            raise ImageError("pagemap ends inside a record length")
        (size,) = unpack(view, pos)
        pos += 4
        if pos + size > end:
            raise ImageError("pagemap record is truncated")
        try:
            parse(view[pos : pos + size])  # clears the message first
        except ProtobufError as exc:
            raise ImageError(f"pagemap entry {len(entries)} does not decode") from exc
        pos += size
        if not has("vaddr"):
            raise ImageError(f"pagemap entry {len(entries)} has no vaddr")
        # Hot loop, inlined: CRIU >= 4.2 writes nr_pages (5), older CRIU compat_nr_pages (2).
        if has("nr_pages"):
            nr = msg.nr_pages
        elif has("compat_nr_pages"):
            nr = msg.compat_nr_pages
        else:
            raise ImageError(f"pagemap entry {len(entries)} has no page count")
        # init_compat_pagemap_entry(): without flags, legacy in_parent or else present.
        flags = msg.flags if has("flags") else PE_PARENT if msg.in_parent else PE_PRESENT
        append(PagemapEntry(msg.vaddr, nr, flags))
    _check_order(entries)
    return Pagemap(pages_id, tuple(entries))


def _check_order(entries: list[PagemapEntry]) -> None:
    """Entries must ascend and not overlap for every plausible page size (4 KiB minimum)."""
    prev_end = 0
    for i, e in enumerate(entries):
        if e.vaddr < prev_end:
            raise ImageError(f"pagemap entry {i} overlaps or is out of order")
        prev_end = e.vaddr + e.nr_pages * 4096
