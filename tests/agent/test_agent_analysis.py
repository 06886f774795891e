"""Analysis in separate processes: the real analyzer's report, a per-job deadline, crashes."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from forensic_checkpoint.agent.analysis_runner import ProcessAnalyzer
from forensic_checkpoint.api.agent import AnalysisOptions
from forensic_checkpoint.errors import ForensicCheckpointError

SECRET = "RANDOM_4105_KEY"  # counter-blog-crio.truth.json: in pid 6's memory


@pytest.mark.slow  # a full analysis in a child process
def test_real_report_is_written_private_and_redacted(sample_tar: Path, tmp_path: Path) -> None:
    analyzer = ProcessAnalyzer(1)
    report = tmp_path / "r.json"
    started = time.monotonic()
    analyzer(sample_tar, report, AnalysisOptions(searches=[SECRET]))
    first = time.monotonic() - started
    body = json.loads(report.read_text())
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert body["redacted"] is True
    hits = [m for s in body["memory"]["searches"] for m in s["matches"]]
    assert 6 in {m["pid"] for m in hits}
    started = time.monotonic()
    analyzer(sample_tar, tmp_path / "r2.json", AnalysisOptions())
    print(
        f"analysis in its own process: first {first:.2f} s, next {time.monotonic() - started:.2f} s"
    )


def test_a_broken_archive_fails_its_job_only(tmp_path: Path, sample_tar: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00not a tar" * 100)
    analyzer = ProcessAnalyzer(1)
    with pytest.raises(ForensicCheckpointError) as info:
        analyzer(junk, tmp_path / "junk.json", AnalysisOptions())
    assert info.value.reason in {"InvalidArchive", "UnsafeArchive", "ArchiveLimitExceeded"}
    assert not (tmp_path / "junk.json").exists()
    analyzer(sample_tar, tmp_path / "ok.json", AnalysisOptions())  # the analyzer still works
    assert (tmp_path / "ok.json").exists()


@pytest.mark.slow  # waits out a 1 s deadline
def test_an_analysis_past_its_deadline_is_killed(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written.tar"
    os.mkfifo(fifo)  # opening it for reading blocks forever: an analysis that never ends
    analyzer = ProcessAnalyzer(1, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ForensicCheckpointError) as info:
        analyzer(fifo, tmp_path / "r.json", AnalysisOptions())
    assert info.value.reason == "AnalysisTimeout"
    assert time.monotonic() - started < 10
