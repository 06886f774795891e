"""The container's filesystem changes: rootfs-diff.tar, deleted.files and OCI whiteouts.

CRI-O and podman write ``rootfs-diff.tar`` as a plain tar plus a ``deleted.files`` JSON list;
containerd stores its OCI layer blob (gzip, despite the name) where deletions are ``.wh.NAME``
entries and ``.wh..wh..opq`` marks an opaque directory. The inner tar is read as a stream from
the outer one (never extracted) and only one level deep: tars inside it are listed as files.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from forensic_checkpoint.analysis.format.contents import ArchiveLimits
from forensic_checkpoint.analysis.format.members import member_kind, normalize_name
from forensic_checkpoint.analysis.format.streams import (
    GZIP_MAGIC,
    ZSTD_MAGIC,
    ForwardReader,
    Readable,
    decompressing_stream,
)
from forensic_checkpoint.analysis.model.report import RootfsEntry
from forensic_checkpoint.errors import ArchiveError, ArchiveLimitError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_BLOCK = 1 << 20


class _Peekable:
    """A stream whose first bytes can be looked at before a decompressor takes it."""

    def __init__(self, inner: Readable) -> None:
        self._inner = inner
        self._head = inner.read(8)
        self._pos = 0

    @property
    def head(self) -> bytes:
        return self._head

    def read(self, size: int = -1) -> bytes:
        if self._pos < len(self._head):
            if size < 0:
                data = self._head[self._pos :] + self._inner.read()
                self._pos = len(self._head)
                return data
            data = self._head[self._pos : self._pos + size]
            self._pos += len(data)
            if len(data) < size:
                data += self._inner.read(size - len(data))
            return data
        return self._inner.read(size)


@dataclass
class RootfsListing:
    format: str = "tar"
    entries: list[RootfsEntry] = field(default_factory=list)
    whiteouts: list[str] = field(default_factory=list)
    opaque_dirs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _open_inner(stream: Readable, limits: ArchiveLimits) -> tuple[tarfile.TarFile, str]:
    peek = _Peekable(stream)
    fmt = "tar"
    compression = "none"
    if peek.head.startswith(GZIP_MAGIC):
        fmt, compression = "tar+gzip", "gzip"
    elif peek.head.startswith(ZSTD_MAGIC):
        fmt, compression = "tar+zstd", "zstd"
    source = decompressing_stream(peek, compression, limits.max_inner_bytes, "rootfs-diff.tar")
    return tarfile.open(fileobj=ForwardReader(source), mode="r:"), fmt  # type: ignore[call-overload]


def iter_inner(
    stream: Readable,
    limits: ArchiveLimits,
    visit: Callable[[tarfile.TarInfo, str, IO[bytes] | None], bool],
) -> str:
    """Call ``visit(info, absolute_path, data_stream)`` per safe inner entry until it returns
    False. Returns the inner format ("tar" | "tar+gzip" | "tar+zstd")."""
    tar, fmt = _open_inner(stream, limits)
    with tar:
        for count, info in enumerate(tar, start=1):
            if count > limits.max_inner_members:
                raise ArchiveLimitError(
                    f"rootfs-diff.tar has more than {limits.max_inner_members} entries"
                )
            name = normalize_name(info.name)
            if name is None:
                raise _Unsafe(info.name)
            path = "/" + name.rstrip("/")
            data = tar.extractfile(info) if info.isreg() else None
            if not visit(info, path, data):
                break
    return fmt


class _Unsafe(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def list_rootfs(stream: Readable, limits: ArchiveLimits) -> RootfsListing:
    """List every entry of the inner tar with size, mode and sha256 (files are hashed while
    streaming, so a dropped binary can be matched against known hashes)."""
    listing = RootfsListing()

    def visit(info: tarfile.TarInfo, path: str, data: IO[bytes] | None) -> bool:
        directory, base = posixpath.split(path)
        if base == OPAQUE_MARKER:
            listing.opaque_dirs.append(directory or "/")
            return True
        if base.startswith(WHITEOUT_PREFIX):
            listing.whiteouts.append(posixpath.join(directory, base[len(WHITEOUT_PREFIX) :]))
            return True
        entry = RootfsEntry(
            path=path,
            type=member_kind(info),
            size_bytes=info.size if info.isreg() else 0,
            mode=oct(info.mode & 0o7777),
            link_target=info.linkname or None,
            mtime=datetime.fromtimestamp(int(info.mtime), tz=UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        )
        # A FIFO or device node (mkfifo, mknod) is listed with its type like any entry: it is
        # read in full, so it is no warning (a warning means part of the archive was not read).
        if data is not None:
            sha = hashlib.sha256()
            while chunk := data.read(_BLOCK):
                sha.update(chunk)
            entry.sha256 = sha.hexdigest()
        listing.entries.append(entry)
        return True

    try:
        listing.format = iter_inner(stream, limits, visit)
    except _Unsafe as exc:
        listing.warnings.append(
            f"rootfs-diff.tar has an unsafe entry {exc.name[:200]!r} (absolute or '..'); "
            "listing stopped there"
        )
    except ArchiveLimitError as exc:
        listing.warnings.append(f"{exc.message}; listing stopped there")
    except (tarfile.TarError, EOFError, OSError, ValueError, ArchiveError) as exc:
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        listing.warnings.append(f"rootfs-diff.tar is damaged: {text}; listing is partial")
    return listing


def read_rootfs_file(
    stream: Readable, limits: ArchiveLimits, target: str, sink: Callable[[bytes], None]
) -> RootfsEntry | None:
    """Stream the content of ``target`` (an absolute path) from the inner tar into ``sink``."""
    want = "/" + (normalize_name(target.lstrip("/")) or "").rstrip("/")
    found: list[RootfsEntry] = []

    def visit(info: tarfile.TarInfo, path: str, data: IO[bytes] | None) -> bool:
        if path != want:
            return True
        found.append(
            RootfsEntry(
                path=path,
                type=member_kind(info),
                size_bytes=info.size,
                mode=oct(info.mode & 0o7777),
            )
        )
        if data is not None:
            while chunk := data.read(_BLOCK):
                sink(chunk)
        return False

    try:
        iter_inner(stream, limits, visit)
    except _Unsafe as exc:
        raise ArchiveError(f"rootfs-diff.tar has an unsafe entry {exc.name[:200]!r}") from exc
    return found[0] if found else None


def parse_deleted_files(data: bytes | None, warnings: list[str]) -> list[str]:
    """podman/CRI-O ``deleted.files``: a JSON array of paths."""
    if data is None:
        return []
    try:
        value = json.loads(data)
    except ValueError:
        warnings.append("deleted.files is not valid JSON")
        return []
    if not isinstance(value, list):
        warnings.append("deleted.files is not a JSON array")
        return []
    return ["/" + str(p).lstrip("/") for p in value if isinstance(p, str)]


def split_mount_stubs(
    entries: list[RootfsEntry], destinations: Iterable[str]
) -> tuple[list[RootfsEntry], list[RootfsEntry]]:
    """(changes, stubs): the stubs are what the runtime wrote to create mount destinations,
    not what ran in the container. containerd's rootfs-diff (the upper layer) holds an empty
    file for each file bind mount the image lacks (/etc/hosts, /dev/termination-log), the
    directory of each volume (ConfigMaps, Secrets, the ServiceAccount token) and the parents
    it created or touched for them.

    A stub is an empty file, or a directory with only stubs below it, at a mount destination
    (spec.dump, or the mount table in the CRIU images, whose paths have symlinks resolved:
    /var/run/secrets is /run/secrets there), or a directory above one with at least one stub
    and nothing else below it. Content at a destination stays a change."""
    wanted = {"/" + d.strip("/") for d in destinations} - {"/"}
    ancestors: set[str] = set()
    for path in wanted:
        while (path := posixpath.dirname(path)) != "/":
            ancestors.add(path)
    children: dict[str, list[RootfsEntry]] = {}
    for e in entries:
        children.setdefault(posixpath.dirname(e.path), []).append(e)
    stubs: set[str] = set()
    # deepest first, so that a directory's children are decided before it
    for e in sorted(entries, key=lambda e: e.path.count("/"), reverse=True):
        below = children.get(e.path, [])
        if (e.type == "file" and e.size_bytes == 0 and e.path in wanted) or (
            e.type == "dir"
            and all(c.path in stubs for c in below)
            and (e.path in wanted or (below and e.path in ancestors))
        ):
            stubs.add(e.path)
    return [e for e in entries if e.path not in stubs], [e for e in entries if e.path in stubs]
