"""Analysis in separate processes: the real analyzer's report, a per-job deadline, crashes."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from tests.agent.agent_support import archive_info, request

from forensic_checkpoint.agent.capture.analysis_runner import ProcessAnalyzer
from forensic_checkpoint.api.agent import AnalysisOptions, CaptureRequest
from forensic_checkpoint.errors import ForensicCheckpointError

SECRET = "RANDOM_4105_KEY"  # counter-blog-crio.truth.json: in pid 6's memory


def _request(options: AnalysisOptions | None = None) -> CaptureRequest:
    asked: CaptureRequest = request("uid1-counter", pod="counters", container="counter")
    return asked.model_copy(update={"analysis": options or AnalysisOptions()})


@pytest.mark.slow  # a full analysis in a child process
def test_real_report_is_written_private_and_redacted(sample_tar: Path, tmp_path: Path) -> None:
    analyzer = ProcessAnalyzer(1)
    report = tmp_path / "r.json"
    started = time.monotonic()
    asked = _request(AnalysisOptions(searches=[SECRET]))
    summary = analyzer(archive_info(sample_tar), report, asked)
    first = time.monotonic() - started
    body = json.loads(report.read_text())
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert body["redacted"] is True
    assert body["archive"]["sha256"] == archive_info(sample_tar).digest()[0]
    hits = [m for s in body["memory"]["searches"] for m in s["matches"]]
    assert 6 in {m["pid"] for m in hits}
    # The status digest comes back with it, built in the analysis process from the same report.
    assert summary.memory_hit_count == len(hits)
    assert summary.process_count == len(body["processes"])
    assert summary.identity.matches_request is True
    started = time.monotonic()
    analyzer(archive_info(sample_tar), tmp_path / "r2.json", _request())
    print(
        f"analysis in its own process: first {first:.2f} s, next {time.monotonic() - started:.2f} s"
    )


def test_a_broken_archive_fails_its_job_only(tmp_path: Path, sample_tar: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00not a tar" * 100)
    analyzer = ProcessAnalyzer(1)
    with pytest.raises(ForensicCheckpointError) as info:
        analyzer(archive_info(junk), tmp_path / "junk.json", _request())
    assert info.value.reason in {"InvalidArchive", "UnsafeArchive", "ArchiveLimitExceeded"}
    assert not (tmp_path / "junk.json").exists()
    analyzer(archive_info(sample_tar), tmp_path / "ok.json", _request())  # the analyzer still works
    assert (tmp_path / "ok.json").exists()


@pytest.mark.slow  # waits out a 1 s deadline
def test_an_analysis_past_its_deadline_is_killed(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written.tar"
    os.mkfifo(fifo)  # opening it for reading blocks forever: an analysis that never ends
    analyzer = ProcessAnalyzer(1, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ForensicCheckpointError) as info:
        analyzer(archive_info(fifo), tmp_path / "r.json", _request())
    assert info.value.reason == "AnalysisTimeout"
    assert time.monotonic() - started < 10
