"""The findings scan memory while the memory engine reads it: one read of the pages, the same
findings as reading them separately, and a failure there costs no memory result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.findings.findings_samples import ATTACKS, DATA

from forensic_checkpoint.analysis import AnalyzerOptions
from forensic_checkpoint.analysis.commands.analyzer import run_analysis
from forensic_checkpoint.analysis.findings import run as findings_run
from forensic_checkpoint.analysis.findings.sources import RunPieces, iter_runs, visit_members
from forensic_checkpoint.analysis.format.contents import DEFAULT_LIMITS, ArchiveLimits
from forensic_checkpoint.analysis.memory import PageIndex
from forensic_checkpoint.analysis.memory.pagemap import PE_PARENT, PE_PRESENT, Pagemap, PagemapEntry
from forensic_checkpoint.analysis.model.report import Report

SAMPLE = ATTACKS[0]
RULES = 'rule shell { strings: $a = "/bin/sh" condition: $a }'


@pytest.fixture(scope="module")
def plain_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plain") / f"{SAMPLE}.tar"
    with (DATA / f"{SAMPLE}.tar.zst").open("rb") as raw:
        path.write_bytes(zstandard.ZstdDecompressor().stream_reader(raw).read())
    return path


WAYS = ["plain tar", "spooled zstd", "streamed zstd"]


def _analyse(way: str, plain: Path, options: AnalyzerOptions) -> Report:
    if way == "plain tar":
        return run_analysis(plain, options)
    limits = DEFAULT_LIMITS if way == "spooled zstd" else ArchiveLimits(max_spool_bytes=0)
    return run_analysis(DATA / f"{SAMPLE}.tar.zst", options, limits)


@pytest.mark.parametrize("way", WAYS)
def test_pages_are_read_once_and_the_findings_do_not_change(
    way: str, plain_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "shell.yar"
    rules.write_text(RULES)
    options = AnalyzerOptions(yara=[str(rules)], reveal=True)
    visited: list[set[str]] = []
    visit = visit_members

    def recording(contents: object, names: set[str], callback: object) -> None:
        visited.append(set(names))
        visit(contents, names, callback)  # type: ignore[arg-type]

    monkeypatch.setattr(findings_run, "visit_members", recording)
    once = _analyse(way, plain_tar, options)
    [names] = visited
    assert not [n for n in names if "/pages-" in n], names  # the findings read no pages

    # The same analysis with the findings reading the pages themselves, as they used to.
    monkeypatch.setattr(findings_run.FindingsPass, "observers", lambda *_args: {})
    visited.clear()
    twice = _analyse(way, plain_tar, options)
    assert [n for n in visited[0] if "/pages-" in n]
    assert once.to_json_dict() == twice.to_json_dict()
    # what only memory gives: YARA over pages, credentials in memory, shell history
    assert any(f.rule == "yara" and f.evidence.address for f in once.findings)
    assert any(f.evidence.details.get("in_memory") for f in once.findings)
    assert once.shell_history


def test_a_failing_memory_scan_costs_findings_only(
    plain_tar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = run_analysis(plain_tar, AnalyzerOptions(reveal=True))

    def broken(self: object, task: object, piece: object) -> None:
        raise RuntimeError("hostile bytes")

    monkeypatch.setattr(findings_run.FindingsPass, "take", broken)
    bad = run_analysis(plain_tar, AnalyzerOptions(reveal=True))
    assert [(p.pid, p.cmdline, p.env) for p in bad.processes] == [
        (p.pid, p.cmdline, p.env) for p in good.processes
    ]
    assert bad.memory == good.memory
    notes = [w for w in bad.warnings if "scanned only in part" in w]
    assert notes and all("RuntimeError: hostile bytes" in w for w in notes)


def _index(runs: list[tuple[int, int, int]]) -> PageIndex:
    entries = tuple(PagemapEntry(vaddr, pages, flags) for vaddr, pages, flags in runs)
    return PageIndex.build(Pagemap(1, entries), 4096)


class _Stream:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        out, self._pos = self._data[self._pos : end], min(end, len(self._data))
        return out


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3), st.integers(1, 6), st.sampled_from([PE_PRESENT] * 3 + [PE_PARENT])
        ),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.integers(1, 30_000), min_size=1, max_size=40),
    st.integers(0, 4096 * 4),
)
def test_pieces_do_not_depend_on_how_the_pages_are_chunked(
    shape: list[tuple[int, int, int]], cuts: list[int], short: int
) -> None:
    """Any chunking of the pages file gives the pieces iter_runs cuts from one stream, also
    when the file is truncated (``short`` bytes missing)."""
    runs, vaddr = [], 0x10000
    for gap, pages, flags in shape:
        vaddr += gap * 4096
        runs.append((vaddr, pages, flags))
        vaddr += pages * 4096
    index = _index(runs)
    data = bytes(range(251)) * (index.present_bytes // 251 + 1)
    data = data[: index.present_bytes]
    data = data[: max(0, len(data) - short)]
    want = list(iter_runs(_Stream(data), index, piece=8192, overlap=1000))
    pieces = RunPieces(index, piece=8192, overlap=1000)
    got: list[Any] = []
    at, k = 0, 0
    while at < len(data):
        size = cuts[k % len(cuts)]
        got += pieces.feed(data[at : at + size])
        at, k = at + size, k + 1
    got += pieces.finish()
    assert got == want
    assert pieces.complete == (len(data) == index.present_bytes)
    for p in got:
        assert p.data == data[p.file_offset : p.file_offset + len(p.data)]


def test_findings_read_the_pages_themselves_when_no_observer_could_be_made(
    plain_tar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = run_analysis(plain_tar, AnalyzerOptions(reveal=True))
    real = findings_run.pages_tasks
    calls: list[int] = []

    def first_call_fails(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("damaged image")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(findings_run, "pages_tasks", first_call_fails)
    again = run_analysis(plain_tar, AnalyzerOptions(reveal=True))
    assert len(calls) == 2  # the observers' call failed; finish() made its own
    assert again.to_json_dict() == good.to_json_dict()
