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

import posixpath
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, cast

from forensic_checkpoint.errors import (
    ArchiveError,
    ArchiveLimitError,
    EncryptedArchiveError,
    UnsafeArchiveError,
)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
AGE_MAGIC = b"age-encryption.org/v1"
_BLOCK = 1 << 20

MiB = 1 << 20
GiB = 1 << 30


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


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
class MemberInfo:
    name: str
    size: int
    #: "file" | "dir" | "symlink" | "hardlink" | "other"
    kind: str
    mode: int
    mtime: int
    linkname: str = ""
    #: byte offset of the data in the (decompressed) tar stream
    offset_data: int = 0


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
    pending_hash: _FileHash | None = field(default=None, repr=False, compare=False)

    def wait_hash(self) -> str | None:
        """Fill ``sha256``/``size_bytes`` from a background hash; returns a warning if the
        file could not be read to the end (a no-op when the hash is already there)."""
        job, self.pending_hash = self.pending_hash, None
        if job is None:
            return None
        job.wait()
        if job.error is not None:
            message = f"could not hash the whole file: {_one_line(job.error)}"
            self.warnings.append(message)
            return message
        self.sha256, self.size_bytes = job.sha256, job.size
        return None

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


def detect_compression(head: bytes) -> str:
    if head.startswith(AGE_MAGIC):
        raise EncryptedArchiveError(
            "archive is age-encrypted; decrypt it first (age -d -i IDENTITY)"
        )
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    return "none"


class _NoHash:
    """Stands in for a sha256 object when hashing is off."""

    def update(self, data: bytes) -> None:
        raise AssertionError("hashing is disabled")

    def hexdigest(self) -> str:
        raise AssertionError("hashing is disabled")


class _HashingReader:
    """Raw file reader that hashes (unless ``enabled`` is false) and counts every byte that
    goes through it."""

    def __init__(self, raw: BinaryIO, *, enabled: bool = True) -> None:
        self._raw = raw
        self.sha: Any = _NoHash()
        if enabled:
            import hashlib  # ~3 ms of OpenSSL set-up that ``search`` (enabled=False) skips

            self.sha = hashlib.sha256()
        self.enabled = enabled
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if self.enabled:
            self.sha.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while chunk := self.read(_BLOCK):
            del chunk


class _BoundedReader:
    """Decompressed stream that stops a decompression bomb at ``limit`` bytes."""

    def __init__(self, inner: Readable, limit: int, what: str) -> None:
        self._inner = inner
        self._limit = limit
        self._what = what
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self.count += len(data)
        if self.count > self._limit:
            raise ArchiveLimitError(
                f"{self._what} expands to more than {self._limit} bytes (decompression bomb?)"
            )
        return data


def decompressing_stream(raw: Readable, compression: str, limit: int, what: str) -> _BoundedReader:
    """Wrap ``raw`` so reads return decompressed bytes, capped at ``limit``."""
    inner: Readable
    if compression == "zstd":
        import zstandard

        # read_across_frames: podman and zstd(1) may write several frames.
        inner = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], raw), read_across_frames=True
        )
    elif compression == "gzip":
        import gzip

        inner = gzip.GzipFile(fileobj=cast(IO[bytes], raw), mode="rb")
    else:
        inner = raw
    return _BoundedReader(inner, limit, what)


class ForwardReader:
    """A read-once stream that tarfile can open in its random-access mode (``"r:"``).

    ``seek`` only moves forward, by reading and dropping bytes in 1 MiB chunks; seeking back
    raises ``tarfile.StreamError`` like stream mode does. Why not stream mode (``"r|"``): it
    skips an unread member in 10 KiB Python-level reads (about 217 000 for a 2 GiB pages
    file) and copies its whole buffer on every small read, while here a skipped member is a
    few large reads and a kept member is one read of its size.
    """

    def __init__(self, inner: Readable) -> None:
        self._inner = inner
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # forward only; tarfile reads members in order

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence != 0:
            raise tarfile.StreamError("seeking from the end is not possible in a stream")
        if pos < self._pos:
            raise tarfile.StreamError("seeking backwards is not allowed")
        while self._pos < pos:
            step = self._inner.read(min(pos - self._pos, _BLOCK))
            if not step:
                break  # past the end: the next read returns b"", as a short file would
            self._pos += len(step)
        self._pos = pos
        return pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self._inner.read(_BLOCK):
                parts.append(chunk)
            data = b"".join(parts)
        else:
            data = self._inner.read(size)
            if 0 < len(data) < size:  # decompressors may return less than asked: fill up
                parts = [data]
                got = len(data)
                while got < size and (more := self._inner.read(size - got)):
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
        self._pos += len(data)
        return data


_READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    OSError,
    ValueError,
)


def _read_errors() -> tuple[type[BaseException], ...]:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - zstandard is a hard dependency
        return _READ_ERRORS
    return (*_READ_ERRORS, zstandard.ZstdError)


def normalize_name(name: str) -> str | None:
    """The member name without ``./``; None when it is absolute or climbs out with ``..``."""
    if name.startswith("/"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts) + ("/" if name.endswith("/") and parts else "")


def link_escapes(member_name: str, target: str) -> bool:
    """True when a symlink target leaves the archive root."""
    if target.startswith("/"):
        return True
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member_name), target))
    return joined == ".." or joined.startswith("../")


def member_kind(info: tarfile.TarInfo) -> str:
    """file, dir, symlink, hardlink or other: the type names the report uses."""
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    return "other"


def is_pages(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return name.startswith("checkpoint/") and base.startswith("pages-") and base.endswith(".img")


#: members read into memory, besides CRIU images under checkpoint/
_KEPT_TOP = frozenset(
    {
        "config.dump",
        "spec.dump",
        "stats-dump",
        "status",
        "status.dump",
        "network.status",
        "bind.mounts",
        "deleted.files",
        "pod.options",
        "pod.dump",
    }
)
#: engine-specific names of the container log
LOG_MEMBERS = ("io.kubernetes.cri-o.LogPath", "container.log", "ctr.log")
#: CRIU's own log (CRI-O and containerd put it in the archive; podman does not)
DUMP_LOG = "dump.log"
ROOTFS_DIFF = "rootfs-diff.tar"


def _wanted_in_memory(name: str) -> bool:
    if name in _KEPT_TOP:
        return True
    if not name.startswith("checkpoint/") or is_pages(name):
        return False
    base = name.rsplit("/", 1)[-1]
    return (base.endswith(".img") and not base.startswith("tmpfs-")) or base == "descriptors.json"


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ArchiveError(f"cannot open {path}: {exc.strerror or exc}") from exc


@contextmanager
def open_tar_stream(
    path: Path, limits: ArchiveLimits = DEFAULT_LIMITS, *, hash_bytes: bool = True
) -> Iterator[tuple[tarfile.TarFile, _HashingReader, str]]:
    """Open ``path`` as a streamed tar; yields (tar, raw hashing reader, compression).

    Without ``hash_bytes`` a plain tar is read with real seeks, so members nobody reads
    (gigabytes of pages) are not read at all."""
    with _open(path) as fh:
        head = fh.read(64)
        fh.seek(0)
        if not head:
            raise ArchiveError(f"{path} is empty")
        compression = detect_compression(head)
        raw = _HashingReader(fh, enabled=hash_bytes)
        source: BinaryIO | ForwardReader
        if compression == "none" and not hash_bytes:
            source = fh
        else:
            stream = decompressing_stream(raw, compression, limits.max_total_bytes, "archive")
            source = ForwardReader(stream)
        try:
            tar = tarfile.open(fileobj=source, mode="r:")  # type: ignore[call-overload]  # noqa: SIM115 - closed below
        except _read_errors() as exc:
            raise ArchiveError(
                f"not a checkpoint archive: cannot read a tar ({compression} compression): "
                f"{_one_line(exc)}"
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


class _FileHash:
    """SHA-256 and size of a whole file, computed in a daemon thread."""

    def __init__(self, path: Path) -> None:
        self.sha256 = ""
        self.size = 0
        self.error: OSError | None = None
        self._thread = threading.Thread(
            target=self._run, args=(path,), name="archive-sha256", daemon=True
        )
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            import hashlib

            with path.open("rb") as fh:
                digest = hashlib.file_digest(fh, "sha256")
                self.size = fh.tell()
            self.sha256 = digest.hexdigest()
        except OSError as exc:
            self.error = exc

    def wait(self) -> None:
        self._thread.join()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def scan_archive(
    path: Path,
    *,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    visitors: dict[str, StreamVisitor] | None = None,
    spool_pages: bool = True,
    hash_later: bool = False,
    hash_file: bool = True,
    pages_visitor: PagesVisitor | None = None,
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
    """
    visitors = visitors or {}
    size = path.stat().st_size if path.exists() else 0
    background = hash_file and hash_later and _peek_compression(path) == "none"
    hashing = hash_file and not background
    with open_tar_stream(path, limits, hash_bytes=hashing) as (tar, raw, compression):
        contents = ArchiveContents(path=path, compression=compression, sha256="", size_bytes=size)
        if background:
            contents.pending_hash = _FileHash(path)
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
            except _read_errors() as exc:  # pragma: no cover - plain reads of a local file
                contents.warnings.append(f"could not hash the whole file: {_one_line(exc)}")
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
    if not _wanted_in_memory(name):
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
    except _read_errors() as exc:
        if not contents.members:
            raise ArchiveError(f"not a readable tar archive: {_one_line(exc)}") from exc
        last = contents.members[-1].name
        contents.warnings.append(
            f"archive is truncated or damaged after member {last!r}: {_one_line(exc)}; "
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
        except _read_errors() as exc:
            raise ArchiveError(f"archive is truncated or damaged: {_one_line(exc)}") from exc


def read_range(path: Path, offset: int, size: int) -> bytes:
    """Bytes of a member of a plain (uncompressed) tar, by offset."""
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def check_safe_member_name(name: str) -> str:
    """Normalise a user-given member path or raise UnsafeArchiveError."""
    norm = normalize_name(name)
    if norm is None:
        raise UnsafeArchiveError(f"unsafe path {name!r}")
    return norm


__all__ = [
    "LOG_MEMBERS",
    "ROOTFS_DIFF",
    "ArchiveContents",
    "ArchiveLimits",
    "ForwardReader",
    "MemberInfo",
    "decompressing_stream",
    "detect_compression",
    "is_pages",
    "link_escapes",
    "normalize_name",
    "read_range",
    "scan_archive",
    "stream_members",
]
