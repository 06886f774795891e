"""Byte streams under the archive reader: compression by magic bytes, hashing, a cap against
decompression bombs, and a forward-only reader that tarfile can open in random-access mode."""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable
from typing import IO, Any, BinaryIO, Protocol, cast

from forensic_checkpoint.errors import (
    ArchiveLimitError,
    EncryptedArchiveError,
)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


GZIP_MAGIC = b"\x1f\x8b"


AGE_MAGIC = b"age-encryption.org/v1"


_BLOCK = 1 << 20


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


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


class HashingReader:
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


class ProgressReader:
    """The archive file, reporting how much further into it each read or (forward) seek got, to
    ``report`` (a progress bar's ``advance``): the pass over the file, skipped members included."""

    def __init__(self, raw: BinaryIO, report: Callable[[int], None]) -> None:
        self._raw = raw
        self._report = report
        self._furthest = raw.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._moved()
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._raw.seek(offset, whence)
        self._moved()
        return position

    def tell(self) -> int:
        return self._raw.tell()

    def _moved(self) -> None:
        position = self._raw.tell()
        if position > self._furthest:
            self._report(position - self._furthest)
            self._furthest = position


class BoundedReader:
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


def decompressing_stream(raw: Readable, compression: str, limit: int, what: str) -> BoundedReader:
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
    return BoundedReader(inner, limit, what)


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


def read_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged tar, gzip or zstd stream raises."""
    import zstandard  # imported on first need: most runs read plain tars

    return (*_READ_ERRORS, zstandard.ZstdError)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
