"""The status summary, built from the analyzer's report of a real CRI-O checkpoint."""

from __future__ import annotations

import copy
import dataclasses
import json
from functools import cache
from pathlib import Path

from forensic_checkpoint.analysis import AnalysisOptions, analyze
from forensic_checkpoint.analysis.report import Report
from forensic_checkpoint.api.forensiccheckpoint import (
    MAX_PROCESSES,
    AnalysisSummary,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.domain.summary import human_size, summarize

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE = DATA / "counter-blog-crio.tar.zst"
TRUTH = json.loads((DATA / "counter-blog-crio.truth.json").read_text())
SECRET = TRUTH["memory_strings"][0]["value"]


@cache
def _report() -> Report:
    return analyze(SAMPLE, AnalysisOptions(searches=[SECRET]))


def test_summary_of_the_blog_sample_matches_its_truth() -> None:
    summary = summarize(_report(), pod="counters", namespace="default", container="counter")
    truth_pids = sorted(p["pid"] for p in TRUTH["processes"])
    assert [p.pid for p in summary.processes] == truth_pids
    assert summary.process_count == len(truth_pids)
    listen = [s for s in TRUTH["sockets"] if s["state"] == "LISTEN"]
    assert summary.listening_count == len(listen)
    assert summary.listening[0].local.endswith(":8088")
    assert summary.listening[0].pid == 6
    secret = TRUTH["memory_strings"][0]
    assert summary.memory_hit_count == secret["occurrences"]
    assert {h.pid for h in summary.memory_hits} == set(secret["found_in_pids"])
    assert {h.address for h in summary.memory_hits} == {
        o["vaddr"] for o in secret["occurrence_list"]
    }
    changed = [e["path"] for e in TRUTH["rootfs"]["entries"] if e["type"] != "dir"]
    assert summary.files.changed_count == len(changed)
    assert set(summary.files.changed_paths) == set(changed)
    assert summary.identity.pod_name == "counters"
    assert summary.identity.matches_request is True
    assert summary.dump_stats  # stats-dump is in the archive


def test_identity_mismatch_is_flagged() -> None:
    summary = summarize(_report(), pod="other", namespace="default", container="counter")
    assert summary.identity.matches_request is False


def test_summary_is_bounded_and_round_trips_through_the_status() -> None:
    report = copy.deepcopy(_report())
    report.processes = [
        dataclasses.replace(p, pid=1000 + i) for i, p in enumerate(report.processes * 30)
    ]
    report.warnings = [f"warning {i}" for i in range(50)]
    summary = summarize(report, pod="counters", namespace="default", container="counter")
    assert summary.process_count == len(report.processes) > MAX_PROCESSES
    assert len(summary.processes) == MAX_PROCESSES
    assert summary.warning_count == 50 and len(summary.warnings) == 10
    as_json = summary.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert AnalysisSummary.model_validate(as_json) == summary
    status = ForensicCheckpointStatus.model_validate({"containers": []})
    assert status.to_kube()["phase"] == "Pending"


def test_human_size() -> None:
    assert human_size(512) == "512 B"
    assert human_size(9700864) == "9.3 MiB"
    assert human_size(3 << 30) == "3.0 GiB"


def test_findings_of_the_attack_sample_are_counted_and_listed() -> None:
    truth = json.loads((DATA / "attack-revshell.truth.json").read_text())
    report = analyze(DATA / "attack-revshell.tar.zst", AnalysisOptions())
    summary = summarize(report, pod="x", namespace="default", container="x")
    assert summary.findings is not None
    assert sum(summary.findings.values()) == len(report.findings)
    assert summary.findings.get("critical", 0) >= 1
    rules = {f.rule for f in summary.top_findings}
    shell = next(f for f in truth["expected_findings"] if f["id"] == "reverse-shell")
    assert "reverse-shell" in rules
    assert (
        next(f for f in summary.top_findings if f.rule == "reverse-shell").pid
        == (shell["evidence"]["pid"])
    )
    # Most severe first, and the established C2 connection shows up in the socket digest.
    ranks = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
    severities = [ranks[f.severity] for f in summary.top_findings]
    assert severities == sorted(severities, reverse=True)
    assert any(s.remote == shell["evidence"]["remote"] for s in summary.established)
