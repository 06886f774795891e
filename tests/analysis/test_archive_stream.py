"""ForwardReader: tarfile's random-access mode over a read-once (decompressed) stream."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import zstandard
from tests.analysis.hostile_archives import entry, tar_bytes
from tests.analysis.sample_data import SAMPLES, sample_path

from forensic_checkpoint.analysis.format.archive import scan_archive
from forensic_checkpoint.analysis.format.streams import ForwardReader


class Dribble:
    """A stream that returns at most ``step`` bytes per read, as a decompressor may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return self._data.read(self._step if size < 0 else min(size, self._step))


def test_members_after_a_skipped_big_member_read_back_exactly() -> None:
    big = bytes(range(256)) * (3 << 12)  # 3 MiB, skipped by seeking
    raw = tar_bytes([entry("big", big), entry("small", b"tail data"), entry("odd", b"x" * 513)])
    inner = Dribble(raw, 4096)
    with tarfile.open(fileobj=ForwardReader(inner), mode="r:") as tar:  # type: ignore[call-overload]
        seen = {}
        for info in tar:
            if info.name != "big":
                stream = tar.extractfile(info)
                assert stream is not None
                seen[info.name] = stream.read()
    assert seen == {"small": b"tail data", "odd": b"x" * 513}


def test_short_reads_are_filled_up_to_the_size_asked() -> None:
    reader = ForwardReader(Dribble(bytes(range(200)), 7))
    assert reader.read(100) == bytes(range(100))
    assert reader.tell() == 100
    reader.seek(150)
    assert reader.read(-1) == bytes(range(150, 200))
    assert reader.read(10) == b""


def test_seeking_back_or_past_the_end_behaves_like_a_stream() -> None:
    reader = ForwardReader(io.BytesIO(b"0123456789"))
    reader.seek(4)
    with pytest.raises(tarfile.StreamError):
        reader.seek(2)
    assert reader.seek(100) == 100
    assert reader.read(1) == b""  # tarfile turns this into "unexpected end of data"


def test_a_skip_is_a_few_large_reads_not_thousands_of_small_ones() -> None:
    raw = tar_bytes([entry("pages", bytes(8 << 20)), entry("after", b"ok")])
    inner = Dribble(raw, 1 << 30)
    with tarfile.open(fileobj=ForwardReader(inner), mode="r:") as tar:  # type: ignore[call-overload]
        names = [info.name for info in tar]
    assert names == ["pages", "after"]
    # stream mode ("r|") reads 10 KiB at a time: more than 800 reads for these 8 MiB
    assert inner.reads < 40


@pytest.mark.parametrize("name", SAMPLES)
def test_scan_of_plain_and_recompressed_samples_agree(name: str, tmp_path: Path) -> None:
    """The same tar, plain and zstd-compressed, lists the same members with the same data."""
    with sample_path(name).open("rb") as fh:
        plain = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
    (tmp_path / "plain.tar").write_bytes(plain)
    (tmp_path / "small-frames.tar.zst").write_bytes(
        zstandard.ZstdCompressor(level=1).compress(plain)
    )
    a = scan_archive(tmp_path / "plain.tar")
    b = scan_archive(tmp_path / "small-frames.tar.zst")
    assert [m.name for m in a.members] == [m.name for m in b.members]
    assert a.data == b.data
    assert [(m.name, m.offset_data, m.size) for m in a.members] == [
        (m.name, m.offset_data, m.size) for m in b.members
    ]


def test_background_hash_of_a_plain_tar_is_the_whole_file(tmp_path: Path) -> None:
    """hash_later: the walk seeks over pages, a thread hashes every byte of the file (the
    trailing bytes after the tar end marker too), and the result equals the inline hash."""
    with sample_path("multi-proc").open("rb") as fh:
        plain = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
    archive = tmp_path / "plain.tar"
    archive.write_bytes(plain + b"trailing bytes after the end marker")
    later = scan_archive(archive, hash_later=True)
    assert later.pending_hash is not None
    assert later.wait_hash() is None
    assert later.pending_hash is None
    inline = scan_archive(archive)
    expected = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert later.sha256 == inline.sha256 == expected
    assert later.size_bytes == inline.size_bytes == archive.stat().st_size
    assert [m.name for m in later.members] == [m.name for m in inline.members]
    assert later.data == inline.data


def test_compressed_archives_are_hashed_inline_even_when_asked_later() -> None:
    contents = scan_archive(sample_path("attack-revshell"), hash_later=True)
    assert contents.pending_hash is None
    assert (
        contents.sha256 == hashlib.sha256(sample_path("attack-revshell").read_bytes()).hexdigest()
    )
