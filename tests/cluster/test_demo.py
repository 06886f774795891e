"""`forensic-checkpoint-dev demo` (what `make demo` runs) is a promise of the README: from
nothing to the secret found in the captured container's memory, with an exit code that says
whether it was found, and nothing left running afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.analysis.sample_data import truth

pytestmark = [
    pytest.mark.cluster,  # the demo starts its own dev cluster, in a child process
    pytest.mark.slow,
]


def _demo(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forensic_checkpoint_dev", "demo", "--dir", str(work), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _running_below(directory: Path) -> list[str]:
    """Command lines of live processes that name ``directory`` (the cluster's own files)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline:
            found.append(cmdline)
    return found


def test_the_demo_finds_the_blog_secret_and_stops_everything(tmp_path: Path) -> None:
    (secret,) = truth("counter-blog-crio")["memory_strings"]
    done = _demo(tmp_path / "found")
    assert done.returncode == 0, done.stderr[-3000:]
    pids = secret["found_in_pids"]
    assert f"{secret['value']} found in the memory of pid {pids}" in done.stderr
    assert "Completed" in done.stdout  # kubectl get fcp -o wide
    assert _running_below(tmp_path) == []


def test_the_demo_fails_when_the_secret_is_not_in_memory(tmp_path: Path) -> None:
    done = _demo(tmp_path / "absent", "--search", "NOT_IN_ANY_MEMORY_0192")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "NOT_IN_ANY_MEMORY_0192 was NOT found in memory" in done.stderr
    assert _running_below(tmp_path) == []
