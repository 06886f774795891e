"""Reading checkpoint archives: one streaming pass, nothing written to disk, every size bounded.

The outer archive is a tar, optionally gzip- or zstd-compressed; the compression is taken from
the first bytes, never from the file name (podman writes zstd into files called ``.tar``). The
pass hashes the raw bytes, lists every member, keeps the small members (metadata and CRIU
images) in memory and hands the others to visitors:

* ``pages-*.img`` of a plain tar are not read at all: the memory engine seeks into the file
  later (``TarInfo.offset_data``). In a compressed archive they are kept in memory up to
  ``ArchiveLimits.max_spool_bytes``; larger ones go to ``pages_visitor`` as they stream by
  (``process_memory.MemoryPass`` searches them then), and are streamed again in a later pass
  only where that could not be done.
* ``rootfs-diff.tar`` and the container log are handed to a visitor as a stream, so a big
  rootfs diff or log never sits in memory.

Archives are untrusted input. Members with absolute names, ``..`` components or device/FIFO
types are never read; links are recorded but never followed; counts and sizes are capped.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

from forensic_checkpoint.analysis.format.contents import (
    DEFAULT_LIMITS,
    ArchiveContents,
    ArchiveLimits,
    PagesVisitor,
    StreamVisitor,
)
from forensic_checkpoint.analysis.format.file_hash import BackgroundHash
from forensic_checkpoint.analysis.format.members import (
    MemberInfo,
    is_pages,
    link_escapes,
    member_kind,
    normalize_name,
    wanted_in_memory,
)
from forensic_checkpoint.analysis.format.streams import (
    ForwardReader,
    HashingReader,
    ProgressReader,
    decompressing_stream,
    detect_compression,
    one_line,
    read_errors,
)
from forensic_checkpoint.errors import (
    ArchiveError,
    ArchiveLimitError,
)


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ArchiveError(f"cannot open {path}: {exc.strerror or exc}") from exc


@contextmanager
def open_tar_stream(
    path: Path,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    *,
    hash_bytes: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[tarfile.TarFile, HashingReader, str]]:
    """Open ``path`` as a streamed tar; yields (tar, raw hashing reader, compression).

    Without ``hash_bytes`` a plain tar is read with real seeks, so members nobody reads
    (gigabytes of pages) are not read at all. ``on_progress`` is told how many more bytes of
    the file the pass got through, as it goes."""
    with _open(path) as opened:
        head = opened.read(64)
        opened.seek(0)
        if not head:
            raise ArchiveError(f"{path} is empty")
        compression = detect_compression(head)
        fh = cast(BinaryIO, ProgressReader(opened, on_progress)) if on_progress else opened
        raw = HashingReader(fh, enabled=hash_bytes)
        source: BinaryIO | ForwardReader
        if compression == "none" and not hash_bytes:
            source = fh
        else:
            stream = decompressing_stream(raw, compression, limits.max_total_bytes, "archive")
            source = ForwardReader(stream)
        try:
            tar = tarfile.open(fileobj=source, mode="r:")  # type: ignore[call-overload]  # noqa: SIM115 - closed below
        except read_errors() as exc:
            raise ArchiveError(
                f"not a checkpoint archive: cannot read a tar ({compression} compression): "
                f"{one_line(exc)}"
            ) from exc
        with tar:
            yield tar, raw, compression


def _peek_compression(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError:
        return "unknown"  # open_tar_stream reports it
    return detect_compression(head) if head else "unknown"


def scan_archive(
    path: Path,
    *,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    visitors: dict[str, StreamVisitor] | None = None,
    spool_pages: bool = True,
    hash_later: bool = False,
    hash_file: bool = True,
    pages_visitor: PagesVisitor | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ArchiveContents:
    """One pass over the archive: list members, keep small ones, stream the rest to visitors.

    ``visitors`` maps a member name to a callback that receives the member's data stream
    (the rootfs diff, the log). Raises ArchiveError types when the archive is unusable; a
    damaged tail after usable members becomes a warning.

    ``hash_later``: a plain tar is hashed in a background thread while the caller goes on
    (hashlib releases the GIL; 2 GiB take ~1.3 s), and the walk seeks over the members it
    does not keep; ``sha256`` and ``size_bytes`` are filled by ``contents.wait_hash()``.

    ``hash_file=False`` (``search``, which reports no hash) skips hashing altogether, so a
    plain tar's pages are never read in this pass.

    ``pages_visitor``: a compressed archive's pages member that is too large to spool is
    handed to it as a stream, with the contents collected so far (every engine writes the
    pagemaps and mm images before the pages), so memory can be searched in this one pass.

    ``on_progress``: told the bytes of the file this pass got through (a progress bar).
    """
    visitors = visitors or {}
    size = path.stat().st_size if path.exists() else 0
    background = hash_file and hash_later and _peek_compression(path) == "none"
    hashing = hash_file and not background
    with open_tar_stream(path, limits, hash_bytes=hashing, on_progress=on_progress) as (
        tar,
        raw,
        compression,
    ):
        contents = ArchiveContents(path=path, compression=compression, sha256="", size_bytes=size)
        if background:
            contents.pending_hash = BackgroundHash(path)
        _walk(
            tar,
            contents,
            limits,
            visitors,
            spool=spool_pages and compression != "none",
            pages_visitor=pages_visitor,
        )
        if hashing:
            # Trailing padding/garbage after the tar end marker is part of the file's hash.
            try:
                raw.drain()
            except read_errors() as exc:  # pragma: no cover - plain reads of a local file
                contents.warnings.append(f"could not hash the whole file: {one_line(exc)}")
            contents.sha256 = raw.sha.hexdigest()
            contents.size_bytes = raw.count
    if not any(m.name.startswith("checkpoint/") for m in contents.members):
        raise ArchiveError("not a container checkpoint: the archive has no checkpoint/ directory")
    return contents


def _member(info: tarfile.TarInfo, contents: ArchiveContents) -> MemberInfo | None:
    """The member's metadata, or None (with a warning) when it must never be read."""
    name = normalize_name(info.name)
    if name is None:
        contents.warnings.append(
            f"skipped unsafe member {info.name[:200]!r}: absolute or '..' path"
        )
        return None
    if info.ischr() or info.isblk() or info.isfifo():
        contents.warnings.append(f"skipped device/FIFO member {name!r}")
        return None
    if info.issym() and link_escapes(name, info.linkname):
        contents.warnings.append(
            f"symlink {name!r} points outside the archive ({info.linkname[:200]!r}); not followed"
        )
    if info.islnk() and normalize_name(info.linkname) is None:
        contents.warnings.append(f"hardlink {name!r} points outside the archive; not followed")
    return MemberInfo(
        name=name,
        size=info.size if info.isreg() else 0,
        kind=member_kind(info),
        mode=info.mode,
        mtime=int(info.mtime),
        linkname=info.linkname,
        offset_data=info.offset_data,
    )


@dataclass
class _Budget:
    kept: int = 0
    spooled: int = 0


def _take(
    tar: tarfile.TarFile,
    info: tarfile.TarInfo,
    member: MemberInfo,
    contents: ArchiveContents,
    *,
    limits: ArchiveLimits,
    budget: _Budget,
    spool: bool,
    pages_visitor: PagesVisitor | None = None,
) -> None:
    """Keep a regular member in memory if it is wanted and fits the limits."""
    name = member.name
    if is_pages(name):
        if spool and budget.spooled + member.size <= limits.max_spool_bytes:
            contents.spooled[name] = _read_member(tar, info, member.size)
            budget.spooled += member.size
        elif spool and pages_visitor is not None:
            stream = tar.extractfile(info)
            if stream is not None:
                pages_visitor(member, stream, contents)
        return
    if not wanted_in_memory(name):
        return
    if member.size > limits.max_member_bytes:
        contents.warnings.append(
            f"member {name} is {member.size} bytes, over the "
            f"{limits.max_member_bytes}-byte limit; not read"
        )
    elif budget.kept + member.size > limits.max_kept_bytes:
        contents.warnings.append(
            f"member {name} not read: metadata exceeds {limits.max_kept_bytes} bytes"
        )
    else:
        contents.data[name] = _read_member(tar, info, member.size)
        budget.kept += member.size


def _walk(
    tar: tarfile.TarFile,
    contents: ArchiveContents,
    limits: ArchiveLimits,
    visitors: dict[str, StreamVisitor],
    *,
    spool: bool,
    pages_visitor: PagesVisitor | None,
) -> None:
    seen: set[str] = set()
    budget = _Budget()
    count = 0
    try:
        for info in tar:
            count += 1
            if count > limits.max_members:
                raise ArchiveLimitError(f"archive has more than {limits.max_members} members")
            member = _member(info, contents)
            if member is None:
                continue
            key = member.name.rstrip("/")
            if key in seen:
                contents.warnings.append(f"duplicate member {member.name!r}: the first one is used")
                continue
            seen.add(key)
            contents.members.append(member)
            if member.kind != "file":
                continue
            if member.name in visitors:
                stream = tar.extractfile(info)
                if stream is not None:
                    visitors[member.name](member, stream)
                continue
            _take(
                tar,
                info,
                member,
                contents,
                limits=limits,
                budget=budget,
                spool=spool,
                pages_visitor=pages_visitor,
            )
    except ArchiveError:
        raise
    except read_errors() as exc:
        if not contents.members:
            raise ArchiveError(f"not a readable tar archive: {one_line(exc)}") from exc
        last = contents.members[-1].name
        contents.warnings.append(
            f"archive is truncated or damaged after member {last!r}: {one_line(exc)}; "
            "the report is partial"
        )
    if count == 0:
        raise ArchiveError("not a checkpoint archive: empty or not a tar")


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, size: int) -> bytes:
    stream = tar.extractfile(info)
    if stream is None:
        return b""
    data = stream.read(size)
    if len(data) < size:
        raise EOFError(f"member {info.name} is truncated")
    return data


def stream_members(
    path: Path,
    wanted: Callable[[str], bool],
    visit: Callable[[MemberInfo, IO[bytes]], bool],
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> None:
    """Another pass: call ``visit`` on the data stream of each safe regular member ``wanted``
    selects, until ``visit`` returns False (done)."""
    with open_tar_stream(path, limits, hash_bytes=False) as (tar, _raw, _compression):
        try:
            for count, info in enumerate(tar, start=1):
                if count > limits.max_members:
                    raise ArchiveLimitError(f"archive has more than {limits.max_members} members")
                name = normalize_name(info.name)
                if name is None or not info.isreg() or not wanted(name):
                    continue
                stream = tar.extractfile(info)
                if stream is None:
                    continue
                member = MemberInfo(
                    name=name,
                    size=info.size,
                    kind="file",
                    mode=info.mode,
                    mtime=int(info.mtime),
                    offset_data=info.offset_data,
                )
                if not visit(member, stream):
                    return
        except ArchiveError:
            raise
        except read_errors() as exc:
            raise ArchiveError(f"archive is truncated or damaged: {one_line(exc)}") from exc


def read_range(path: Path, offset: int, size: int) -> bytes:
    """Bytes of a member of a plain (uncompressed) tar, by offset."""
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(size)


__all__ = ["read_range", "scan_archive", "stream_members"]
