"""Large archives get glibc's heap settings for big buffers; small ones skip them."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from forensic_checkpoint.analysis.commands.heap import LARGE_ARCHIVE, tune_for


def test_small_and_missing_archives_are_left_alone(tmp_path: Path) -> None:
    small = tmp_path / "small.tar"
    small.write_bytes(b"\0" * 1024)
    assert tune_for([small, tmp_path / "missing.tar"]) is False


HEAP_SIZE = """
def heap():
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            return hi - lo
    return 0
"""


def _run(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", HEAP_SIZE + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_large_archive_serves_big_buffers_from_the_heap(tmp_path: Path) -> None:
    large = tmp_path / "large.tar"
    with large.open("wb") as fh:
        fh.truncate(LARGE_ARCHIVE)  # sparse: only the size counts
    # the heap grows by the buffer, less what was free at its top already
    grow = "before = heap(); chunk = bytes(24 << 20); print(heap() - before >= 16 << 20)\n"
    tune = "from forensic_checkpoint.analysis.commands.heap import tune_for\n"
    tuned = _run(f"{tune}print(tune_for([{str(large)!r}]))\n{grow}")
    assert tuned == ["True", "True"]  # applied, and a 24 MiB buffer came from the heap
    assert _run(grow) == ["False"]  # glibc's default: mmap, released on free
