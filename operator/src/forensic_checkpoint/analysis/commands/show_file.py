"""``show-file``: one file's bytes from a checkpoint, streamed to a sink.

An absolute path is looked up in rootfs-diff.tar (files the container wrote) and, failing
that, among the ghost files (deleted-but-open files whose content CRIU saved). A relative
path names an archive member (``spec.dump``, ``checkpoint/core-1.img``); ``decode`` turns a
CRIU image into JSON the way ``crit show`` does. Nothing is written to disk; the caller
decides where the bytes go.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO

from forensic_checkpoint.analysis.format.archive import scan_archive, stream_members
from forensic_checkpoint.analysis.format.contents import DEFAULT_LIMITS, ArchiveLimits
from forensic_checkpoint.analysis.format.criu_json import image_json
from forensic_checkpoint.analysis.format.members import (
    ROOTFS_DIFF,
    MemberInfo,
    check_safe_member_name,
)
from forensic_checkpoint.analysis.model.report import RootfsEntry
from forensic_checkpoint.analysis.sections.files import FileTable
from forensic_checkpoint.analysis.sections.rootfs import read_rootfs_file
from forensic_checkpoint.errors import ArchiveLimitError, MemberNotFoundError


def show_file(
    archive: Path,
    path: str,
    sink: Callable[[bytes], None],
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> str:
    """Stream the content of ``path`` into ``sink``; return where it came from."""
    target = "/" + path.lstrip("/")
    found: list[RootfsEntry] = []

    def visit(_member: MemberInfo, stream: IO[bytes]) -> None:
        entry = read_rootfs_file(stream, limits, target, sink)
        if entry is not None:
            found.append(entry)

    contents = scan_archive(
        archive, limits=limits, visitors={ROOTFS_DIFF: visit}, spool_pages=False
    )
    if found:
        if found[0].type != "file":
            raise MemberNotFoundError(f"{target} in {ROOTFS_DIFF} is a {found[0].type}, not a file")
        return f"{ROOTFS_DIFF}:{target}"
    warnings: list[str] = []
    ghost = FileTable.load(contents.data, warnings).ghost_content(target)
    if ghost is not None:
        sink(ghost)
        return f"ghost file (deleted but open):{target}"
    raise MemberNotFoundError(
        f"{target} is neither in {ROOTFS_DIFF} nor a deleted-but-open file of this checkpoint"
    )


def show_member(
    archive: Path,
    name: str,
    sink: Callable[[bytes], None],
    *,
    decode: bool = False,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> None:
    """Stream archive member ``name`` into ``sink``, or its decoded JSON with ``decode``."""
    wanted = check_safe_member_name(name).rstrip("/")
    found: list[bytes] = []

    def visit(member: MemberInfo, stream: IO[bytes]) -> bool:
        if decode:
            if member.size > limits.max_member_bytes:
                raise ArchiveLimitError(f"{wanted} is too large to decode ({member.size} bytes)")
            found.append(stream.read(member.size))
        else:
            found.append(b"")
            while chunk := stream.read(1 << 20):
                sink(chunk)
        return False

    stream_members(archive, lambda n: n == wanted, visit, limits)
    if not found:
        raise MemberNotFoundError(f"the archive has no regular member {wanted!r}")
    if decode:
        sink(decode_image_json(wanted, found[0]).encode())


def decode_image_json(name: str, data: bytes) -> str:
    """A CRIU image as JSON: crit's rendering, except pagemaps, which crit 3.17 misreads for
    CRIU >= 4.2 (nr_pages moved to field 5) and the memory engine reads right."""
    import json

    base = name.rsplit("/", 1)[-1]
    value: object
    if base.startswith("pagemap-"):
        from forensic_checkpoint.analysis.memory import parse_pagemap

        pagemap = parse_pagemap(data)
        value = {
            "magic": "PAGEMAP",
            "entries": [{"pages_id": pagemap.pages_id}]
            + [
                {"vaddr": f"0x{e.vaddr:x}", "nr_pages": e.nr_pages, "flags": e.flags}
                for e in pagemap.entries
            ],
        }
    else:
        value = image_json(name, data)
    return json.dumps(value, indent=2, default=str) + "\n"


def hexdump_lines(vaddr: int, data: bytes) -> list[str]:
    """``address  16 hex bytes  |ascii|`` rows; unlike memparse, no row is ever collapsed."""
    rows = []
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        rows.append(f"{vaddr + i:016x}  {hexes:<47}  |{text}|\n")
    return rows


def show_memory(
    archive: Path,
    pid: int,
    sink: Callable[[bytes], None],
    *,
    address: int | None = None,
    length: int | None = None,
    raw: bool = False,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> int:
    """Dump the dumped memory of ``pid`` (or ``[address, address+length)`` of it) as a hexdump,
    or as raw bytes with ``raw``; returns the number of bytes shown. Pages CRIU did not dump
    are skipped, never filled in. The pages are streamed, so any archive size works."""
    from forensic_checkpoint.analysis.memory import PageIndex, derive_page_size, parse_pagemap

    name = f"checkpoint/pagemap-{pid}.img"
    contents = scan_archive(archive, limits=limits, spool_pages=False)
    if name not in contents.data:
        raise MemberNotFoundError(f"no memory for pid {pid} in this checkpoint ({name})")
    pagemap = parse_pagemap(contents.data[name])
    pages_name = f"checkpoint/pages-{pagemap.pages_id}.img"
    member = contents.member(pages_name)
    if member is None:
        raise MemberNotFoundError(f"{pages_name} (memory of pid {pid}) is not in the archive")
    index = PageIndex.build(pagemap, derive_page_size(member.size, pagemap))
    lo = address if address is not None else 0
    hi = lo + length if length is not None else 1 << 64
    shown = [0]

    def emit(vaddr: int, data: bytes) -> None:
        start, end = max(vaddr, lo), min(vaddr + len(data), hi)
        if start < end:
            piece = data[start - vaddr : end - vaddr]
            sink(piece if raw else "".join(hexdump_lines(start, piece)).encode())
            shown[0] += len(piece)

    def visit(_member: MemberInfo, stream: IO[bytes]) -> bool:
        pos = 0
        for run in index.runs:  # in file order, which is vaddr order
            if run.file_offset > pos:
                stream.read(run.file_offset - pos)
            done = 0
            while done < run.size:
                data = stream.read(min(1 << 20, run.size - done))
                if not data:
                    return False
                if run.vaddr + done < hi and run.vaddr + done + len(data) > lo:
                    emit(run.vaddr + done, data)
                done += len(data)
            pos = run.file_offset + run.size
            if run.vaddr + run.size >= hi:
                break
        return False

    stream_members(archive, lambda n: n == pages_name, visit, limits)
    return shown[0]
