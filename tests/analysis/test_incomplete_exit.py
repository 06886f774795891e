"""An archive the analyzer cannot read whole never gives exit code 0.

A forensic tool must not give a false negative with exit 0: `search` printing `0 matches` for a
secret that is in memory twice, because an image could not be decoded, is the failure this
guards against (issue 18: a wheel without pycriu once gave an empty process tree and that).
`analyze` and `search` still write what they could read, and exit 3 with a one-line message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.analysis.sample_data import sample_path
from tests.factories import edited_sample

from forensic_checkpoint.cli.main import EXIT_INCOMPLETE, main

SAMPLE = "counter-blog"
SECRET = "RANDOM_5519_KEY"  # in memory twice (tests/data/counter-blog.truth.json), pid 6


def _truncate(member: str) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        members[member] = members[member][: len(members[member]) // 2]

    return edit


def _garble(member: str) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        data = members[member]
        members[member] = data[:8] + bytes(b ^ 0xA5 for b in data[8:])

    return edit


DAMAGE = {
    "truncated-pstree": _truncate("checkpoint/pstree.img"),
    "garbled-pstree": _garble("checkpoint/pstree.img"),
    "truncated-mm": _truncate("checkpoint/mm-6.img"),
    "garbled-pagemap": _garble("checkpoint/pagemap-6.img"),
    "truncated-core": _truncate("checkpoint/core-6.img"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_search_on_a_damaged_image_exits_incomplete(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = edited_sample(SAMPLE, tmp_path, DAMAGE[damage], damage)
    code = main(["search", str(archive), SECRET, "-o", "json"])
    out, err = capsys.readouterr()
    assert code == EXIT_INCOMPLETE, (json.loads(out)["warnings"], err)
    assert "incomplete" in err and "could not be read" in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


@pytest.mark.parametrize("damage", ["truncated-pstree", "garbled-pagemap"])
def test_analyze_on_a_damaged_image_writes_the_report_and_exits_incomplete(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = edited_sample(SAMPLE, tmp_path, DAMAGE[damage], damage)
    code = main(["analyze", str(archive), "-o", "json", "--no-memory-secrets"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == EXIT_INCOMPLETE
    assert report["warnings"] and report["warnings"][0] in err


def test_the_intact_sample_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", str(sample_path(SAMPLE)), SECRET]) == 0
    assert f"'{SECRET}': 2 matches" in capsys.readouterr().out


def test_without_the_criu_modules_search_fails_instead_of_finding_nothing() -> None:
    """The first report's case: the image decoder unavailable (then pycriu missing, now the
    generated modules missing) must not turn into `0 matches` and exit 0."""
    script = (
        "import sys\n"
        "from forensic_checkpoint.analysis.format import criu_messages\n"
        "from forensic_checkpoint.errors import ImageError\n"
        "def missing(): raise ImageError('the CRIU image modules were not generated')\n"
        "criu_messages._pb2_dir = missing\n"
        "from forensic_checkpoint.cli.main import main\n"
        f"sys.exit(main(['search', {str(sample_path(SAMPLE))!r}, {SECRET!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == EXIT_INCOMPLETE, done.stdout + done.stderr
    assert "were not generated" in done.stderr
    assert "Traceback" not in done.stderr
