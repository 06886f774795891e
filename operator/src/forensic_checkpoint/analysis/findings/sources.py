"""Bytes the findings need beyond the report: the content of rootfs-diff files.

The analyzer lists and hashes rootfs-diff.tar while streaming; findings also need what the
files say (a cron line, a key, YARA over a dropped binary). A plain tar is read by offset; a
compressed archive costs one more streaming pass, which stops at rootfs-diff.tar.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from typing import IO

from forensic_checkpoint.analysis.archive import (
    DEFAULT_LIMITS,
    ROOTFS_DIFF,
    ArchiveContents,
    MemberInfo,
    stream_members,
)
from forensic_checkpoint.analysis.rootfs import iter_inner

#: files larger than this are not read (their sha256 is in the report already)
MAX_FILE_BYTES = 16 << 20
#: all rootfs file content kept for one analysis
MAX_TOTAL_BYTES = 128 << 20


@dataclass
class RootfsContent:
    files: dict[str, bytes] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


class _Window:
    """A file-like view of one member of a plain tar (no extraction, no copy of the rest)."""

    def __init__(self, fh: IO[bytes], offset: int, size: int) -> None:
        self._fh, self._pos, self._end = fh, offset, offset + size

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._pos
        want = left if size < 0 else min(size, left)
        self._fh.seek(self._pos)
        data = self._fh.read(want)
        self._pos += len(data)
        return data


def read_rootfs_files(contents: ArchiveContents) -> RootfsContent:
    out = RootfsContent()
    budget = [MAX_TOTAL_BYTES]

    def visit_inner(info: tarfile.TarInfo, path: str, data: IO[bytes] | None) -> bool:
        if data is None:
            return True
        if info.size > MAX_FILE_BYTES or info.size > budget[0]:
            out.skipped.append(path)
            return True
        blob = data.read(info.size)
        budget[0] -= len(blob)
        out.files[path] = blob
        return True

    member = contents.member(ROOTFS_DIFF)
    if member is None:
        return out
    if contents.seekable:
        with contents.path.open("rb") as fh:
            iter_inner(_Window(fh, member.offset_data, member.size), DEFAULT_LIMITS, visit_inner)
        return out

    def visit(_m: MemberInfo, stream: IO[bytes]) -> bool:
        iter_inner(stream, DEFAULT_LIMITS, visit_inner)
        return False

    stream_members(contents.path, lambda n: n == ROOTFS_DIFF, visit)
    return out
