"""A kubelet archive is adopted only once it is written to its end: the real runtime writes
straight to the final path, so a file found mid-write must not be hashed as evidence."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from forensic_checkpoint.agent.capture.tar_end import is_complete_tar


def test_a_whole_kubelet_archive_is_complete(sample_tar: Path) -> None:
    assert is_complete_tar(sample_tar)


@pytest.mark.parametrize("fraction", [0.0001, 0.1, 0.5, 0.9, 0.9999])
def test_every_cut_of_it_is_not(sample_tar: Path, tmp_path: Path, fraction: float) -> None:
    data = sample_tar.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: int(len(data) * fraction)])
    assert not is_complete_tar(cut)


def test_cut_at_every_member_boundary_is_not(sample_tar: Path, tmp_path: Path) -> None:
    """Between two members the file is a valid prefix: only the end marker makes it whole."""
    with tarfile.open(sample_tar) as tar:
        ends = [m.offset_data + -(-m.size // 512) * 512 for m in tar.getmembers()]
    data = sample_tar.read_bytes()
    cut = tmp_path / "cut.tar"
    for end in ends:
        cut.write_bytes(data[:end])
        assert not is_complete_tar(cut), end
        cut.write_bytes(data[:end] + bytes(512))  # one zero block is not the end marker
        assert not is_complete_tar(cut), end


def test_padding_after_the_end_marker_and_large_members(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, size in (("a", 0), ("b", 1), ("pages-1.img", 70_000)):
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(b"\x01" * size))
    whole = tmp_path / "whole.tar"
    whole.write_bytes(buffer.getvalue())  # tarfile pads to a 10 KiB record
    assert is_complete_tar(whole)
    whole.write_bytes(buffer.getvalue() + b"\x01")
    assert not is_complete_tar(whole)


def test_not_a_tar_is_not_complete(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x7fELF" + bytes(2044))
    assert not is_complete_tar(junk)
    assert not is_complete_tar(tmp_path / "missing.tar")
    zeros = tmp_path / "zeros.tar"
    zeros.write_bytes(bytes(10240))  # an end marker and nothing before it
    assert not is_complete_tar(zeros)
