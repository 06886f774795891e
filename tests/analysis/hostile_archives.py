"""Builders for the hostile-archive corpus: real sample members, re-packed with a twist."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import zstandard
from tests.analysis.sample_data import sample_path


@cache
def members(sample: str = "counter-blog") -> tuple[tuple[tarfile.TarInfo, bytes], ...]:
    """(header, data) of every member of a committed real sample."""
    with sample_path(sample).open("rb") as fh:
        raw = zstandard.ZstdDecompressor().stream_reader(fh).read()
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for info in tar:
            data = b""
            if info.isreg():
                f = tar.extractfile(info)
                data = f.read() if f else b""
            out.append((info, data))
    return tuple(out)


def small_members(sample: str = "counter-blog") -> list[tuple[tarfile.TarInfo, bytes]]:
    """The sample without its memory pages and rootfs diff (fast; tests add their own diff)."""
    return [
        (i, d)
        for i, d in members(sample)
        if "/pages-" not in i.name and i.name != "rootfs-diff.tar"
    ]


def entry(name: str, data: bytes = b"", **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    if info.type != tarfile.REGTYPE:
        info.size = 0
    return info, data


def write_tar(
    path: Path, items: Iterable[tuple[tarfile.TarInfo, bytes]], compress: str = "none"
) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:", format=tarfile.GNU_FORMAT) as tar:
        for info, data in items:
            copy = tarfile.TarInfo(info.name)
            for key in ("mode", "mtime", "type", "linkname", "uid", "gid"):
                setattr(copy, key, getattr(info, key))
            copy.size = len(data) if copy.isreg() else 0
            tar.addfile(copy, io.BytesIO(data) if copy.isreg() else None)
    raw = buf.getvalue()
    if compress == "zstd":
        raw = zstandard.ZstdCompressor().compress(raw)
    elif compress == "gzip":
        import gzip

        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def tar_bytes(items: Iterable[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        for info, data in items:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def replace(
    items: list[tuple[tarfile.TarInfo, bytes]], name: str, data: bytes
) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    for info, old in items:
        if info.name == name:
            new = tarfile.TarInfo(info.name)
            new.mode, new.mtime, new.size = info.mode, info.mtime, len(data)
            out.append((new, data))
        else:
            out.append((info, old))
    return out
