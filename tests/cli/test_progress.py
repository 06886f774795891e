"""The analyzer's progress bar (`analyze`, `search`): on stderr for a large archive when stderr is
a terminal, nothing when piped or for a small archive; the pass reports the file's bytes,
skipped members included. (The bar itself and get-archive's use: test_get_archive.py.)"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from tests.factories import DATA, plain_sample

from forensic_checkpoint import progress
from forensic_checkpoint.analysis.format.archive import scan_archive
from forensic_checkpoint.cli.main import main

SECRET = "RANDOM_4105_KEY"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plain_sample("counter-blog", tmp_path_factory.mktemp("progress"))


@pytest.mark.parametrize(
    "argv",
    [["analyze", "{a}", "-o", "json"], ["search", "{a}", SECRET]],
    ids=["analyze", "search"],
)
@pytest.mark.parametrize("archive", ["plain", "zstd"])
def test_a_large_archive_draws_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    plain: Path,
    argv: list[str],
    archive: str,
) -> None:
    path = plain if archive == "plain" else DATA / "counter-blog.tar.zst"
    args = [a.format(a=path) for a in argv]
    monkeypatch.setattr(progress, "LARGE_ARCHIVE_BYTES", 1)  # this sample counts as large
    terminal = Terminal()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", terminal)
        assert main(args) == 0
    drawn = terminal.getvalue()
    assert drawn.startswith("\r") and drawn.endswith("\n"), drawn
    assert path.name in drawn and "/s" in drawn
    assert capsys.readouterr().out  # the result still goes to stdout

    piped = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", piped)
        assert main(args) == 0
    assert piped.getvalue() == ""


def test_a_small_archive_draws_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], plain: Path
) -> None:
    assert plain.stat().st_size < progress.LARGE_ARCHIVE_BYTES
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["search", str(plain), SECRET]) == 0
    assert terminal.getvalue() == ""
    capsys.readouterr()


def test_the_pass_reports_the_whole_file_skipped_members_included(plain: Path) -> None:
    seen: list[int] = []
    scan_archive(plain, hash_file=False, spool_pages=False, on_progress=seen.append)
    size = plain.stat().st_size
    # tarfile stops at the end-of-archive block: the record padding after it is not read.
    assert size - 20480 <= sum(seen) <= size
    assert len(seen) > 1 and all(n > 0 for n in seen)
