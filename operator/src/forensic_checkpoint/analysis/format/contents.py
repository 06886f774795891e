"""What one pass over an archive yields (``ArchiveContents``) and the bounds it keeps to
(``ArchiveLimits``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from forensic_checkpoint.analysis.format.file_hash import BackgroundHash
from forensic_checkpoint.analysis.format.members import (
    MemberInfo,
)
from forensic_checkpoint.analysis.format.streams import (
    one_line,
)

MiB = 1 << 20


GiB = 1 << 30


@dataclass(frozen=True)
class ArchiveLimits:
    """Safety bounds. Defaults fit real checkpoints of containers with tens of GiB of memory."""

    max_members: int = 100_000
    #: decompressed bytes of the whole outer archive (decompression bombs)
    max_total_bytes: int = 256 * GiB
    #: one member read into memory (metadata, CRIU images other than pages)
    max_member_bytes: int = 64 * MiB
    #: all members kept in memory together, pages excluded
    max_kept_bytes: int = 512 * MiB
    #: pages kept in memory when the archive is compressed (else streamed in a second pass)
    max_spool_bytes: int = 64 * MiB
    #: entries and decompressed bytes of the inner rootfs-diff.tar
    max_inner_members: int = 200_000
    max_inner_bytes: int = 64 * GiB


DEFAULT_LIMITS = ArchiveLimits()


@dataclass
class ArchiveContents:
    path: Path
    compression: str
    sha256: str
    size_bytes: int
    members: list[MemberInfo] = field(default_factory=list)
    #: small members kept in memory, by normalised name
    data: dict[str, bytes] = field(default_factory=dict)
    #: pages-*.img (and pagemap-shmem pages) kept in memory (compressed archives only)
    spooled: dict[str, bytes] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: the whole-file hash still being computed (``scan_archive(hash_later=True)``)
    pending_hash: BackgroundHash | None = field(default=None, repr=False, compare=False)

    def wait_hash(self) -> str | None:
        """Fill ``sha256``/``size_bytes`` from a background hash; returns a warning if the
        file could not be read to the end (a no-op when the hash is already there)."""
        job, self.pending_hash = self.pending_hash, None
        if job is None:
            return None
        try:
            self.sha256, self.size_bytes = job.result()
        except OSError as exc:
            message = f"could not hash the whole file: {one_line(exc)}"
            self.warnings.append(message)
            return message
        return None

    @property
    def member_sizes(self) -> dict[str, int]:
        """Member name -> size in bytes."""
        return {m.name: m.size for m in self.members}

    def member(self, name: str) -> MemberInfo | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def seekable(self) -> bool:
        """True when member data can be read by offset straight from the file."""
        return self.compression == "none"


#: visitor(member, stream) for members the caller wants to see as a stream
StreamVisitor = Callable[[MemberInfo, IO[bytes]], None]


#: Receives a pages member too large to spool, with what the pass has collected so far.
PagesVisitor = Callable[[MemberInfo, IO[bytes], "ArchiveContents"], None]
