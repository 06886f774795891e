"""A large compressed archive is read once: its pages are searched, and the findings scan
them, while the first pass streams by (the images they need come before them in every
engine's archive). The report is the same as from spooled pages, and the second pass stays
as the fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import zstandard
from tests.analysis.sample_data import SAMPLES, sample_path, truth

from forensic_checkpoint.analysis import AnalyzerOptions
from forensic_checkpoint.analysis.commands.analyzer import run_analysis
from forensic_checkpoint.analysis.commands.search import SearchOptions, search_archive
from forensic_checkpoint.analysis.findings import run as findings_run
from forensic_checkpoint.analysis.findings.sources import visit_members
from forensic_checkpoint.analysis.format import archive as archive_format
from forensic_checkpoint.analysis.format import streams
from forensic_checkpoint.analysis.format.archive import stream_members
from forensic_checkpoint.analysis.format.contents import DEFAULT_LIMITS, ArchiveLimits
from forensic_checkpoint.analysis.model.report import Report
from forensic_checkpoint.analysis.sections import pages_reading, process_memory

STREAMED = ArchiveLimits(max_spool_bytes=0)  # no pages spooled: as for a multi-GiB archive


def _options(sample: str) -> AnalyzerOptions:
    searches = [m["value"] for m in truth(sample)["memory_strings"]]
    return AnalyzerOptions(searches=searches, reveal=True)


class _Passes:
    """Counts the streaming passes after the first: the memory engine's and the findings'."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.memory: list[set[str]] = []
        self.findings: list[set[str]] = []
        memory_pass, findings_visit = stream_members, visit_members

        def memory(path: object, wanted: object, visit: object) -> None:
            self.memory.append({"called"})
            memory_pass(path, wanted, visit)  # type: ignore[arg-type]

        def findings(contents: object, names: set[str], visit: object) -> None:
            self.findings.append({n for n in names if "/pages-" in n})
            findings_visit(contents, names, visit)  # type: ignore[arg-type]

        monkeypatch.setattr(pages_reading, "stream_members", memory)
        monkeypatch.setattr(findings_run, "visit_members", findings)

    @property
    def pages_read_again(self) -> bool:
        return bool(self.memory) or any(self.findings)


@pytest.mark.parametrize("sample", SAMPLES)
def test_streamed_pages_are_read_in_the_first_pass(
    sample: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spooled = run_analysis(sample_path(sample), _options(sample), DEFAULT_LIMITS)
    passes = _Passes(monkeypatch)
    once = run_analysis(sample_path(sample), _options(sample), STREAMED)
    assert not passes.pages_read_again
    assert once.to_json_dict() == spooled.to_json_dict()
    assert any(s.total_matches for s in once.memory.searches)


def test_search_reads_a_streamed_archive_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sample = "attack-revshell"
    options = SearchOptions(literals=[m["value"] for m in truth(sample)["memory_strings"]])
    spooled = search_archive(sample_path(sample), options).to_json()
    passes = _Passes(monkeypatch)
    once = search_archive(sample_path(sample), options, STREAMED).to_json()
    assert not passes.memory
    assert once == spooled


def _without_first_pass(monkeypatch: pytest.MonkeyPatch, sample: str) -> tuple[Report, _Passes]:
    def cannot_plan(*_args: object) -> object:
        raise RuntimeError("a damaged image")

    monkeypatch.setattr(process_memory, "provisional_tree", cannot_plan)
    passes = _Passes(monkeypatch)
    return run_analysis(sample_path(sample), _options(sample), STREAMED), passes


def test_when_the_first_pass_cannot_plan_the_second_pass_does_the_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sample = "attack-revshell"
    spooled = run_analysis(sample_path(sample), _options(sample), DEFAULT_LIMITS)
    report, passes = _without_first_pass(monkeypatch, sample)
    assert passes.memory  # read again, as before
    assert report.to_json_dict() == spooled.to_json_dict()


@pytest.mark.parametrize("compressed", [True, False], ids=["zstd", "plain"])
def test_an_archive_the_agent_hashed_is_not_hashed_again(
    compressed: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The node agent hashes every archive as it lands: its analysis takes that digest and
    reads the archive once, for the analysis alone, with the same findings."""
    sample = SAMPLES[0]
    path = sample_path(sample)
    if not compressed:
        path = tmp_path / "plain.tar"
        path.write_bytes(
            zstandard.ZstdDecompressor()
            .decompressobj()
            .decompress(sample_path(sample).read_bytes())
        )
    hashed: list[str] = []  # every way the analysis hashes an archive it reads
    reader_init, file_hash = streams.HashingReader.__init__, archive_format.BackgroundHash  # type: ignore[attr-defined]

    def reader(self: Any, raw: Any, *, enabled: bool = True) -> None:
        if enabled:
            hashed.append("inline")
        reader_init(self, raw, enabled=enabled)

    def background(*args: Any) -> Any:
        hashed.append("background")
        return file_hash(*args)

    monkeypatch.setattr(streams.HashingReader, "__init__", reader)
    monkeypatch.setattr(archive_format, "BackgroundHash", background)
    plain = run_analysis(path, _options(sample))
    assert hashed, "the analysis no longer hashes by these two ways: update this test"
    hashed.clear()
    digest = ("ab" * 32, plain.archive.size_bytes)
    options = AnalyzerOptions(**{**vars(_options(sample)), "known_digest": digest})
    known = run_analysis(path, options)
    monkeypatch.undo()
    assert hashed == []
    assert (known.archive.sha256, known.archive.size_bytes) == digest
    assert known.findings == plain.findings and known.memory == plain.memory
