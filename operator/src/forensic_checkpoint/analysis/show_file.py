"""``show-file``: one file's bytes from a checkpoint, streamed to a sink.

The file is looked up in rootfs-diff.tar (files the container wrote) and, failing that,
among the ghost files (deleted-but-open files whose content CRIU saved). Nothing is written
to disk; the caller decides where the bytes go.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO

from forensic_checkpoint.analysis.archive import (
    DEFAULT_LIMITS,
    ROOTFS_DIFF,
    ArchiveLimits,
    MemberInfo,
    scan_archive,
)
from forensic_checkpoint.analysis.files import FileTable
from forensic_checkpoint.analysis.report import RootfsEntry
from forensic_checkpoint.analysis.rootfs import read_rootfs_file
from forensic_checkpoint.errors import MemberNotFoundError


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
