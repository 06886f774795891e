"""The status summary the agent builds from the analyzer's report of a real CRI-O checkpoint."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from forensic_checkpoint.agent.capture.summary import summarize
from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.analysis.model.report import Report
from forensic_checkpoint.api.forensiccheckpoint import (
    MAX_PROCESSES,
    AnalysisSummary,
    ContainerStatus,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.domain.capture import reconcile
from forensic_checkpoint.domain.formatting import frozen_time, human_duration, human_size

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE = DATA / "counter-blog-crio.tar.zst"
TRUTH = json.loads((DATA / "counter-blog-crio.truth.json").read_text())
SECRET = TRUTH["memory_strings"][0]["value"]


@cache
def _report() -> Report:
    return analyze(SAMPLE, AnalyzerOptions(searches=[SECRET]))


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


def test_the_freeze_of_the_dump_is_in_the_container_status_and_the_printer_column() -> None:
    """CRIU's frozen_time: how long the workload served nothing (real-node.md M3: a 13 s dump
    of a 2 GiB container made its exec readiness probe fail)."""
    truth = TRUTH["criu_stats_dump"]["dump"]["frozen_time"]  # microseconds
    summary = summarize(_report(), pod="counters", namespace="default", container="counter")
    assert summary.dump_stats["frozenTime"] == truth == 149600
    assert frozen_time(summary) == "149.6ms"
    ref = reconcile.CheckpointRef(name="blog", namespace="default", uid="u", generation=1)
    status = ForensicCheckpointStatus(
        containers=[
            ContainerStatus(name=name, capture_key=f"u-{name}") for name in ("app", "sidecar")
        ]
    )
    slow = summary.model_copy(
        update={"dump_stats": {**summary.dump_stats, "frozenTime": 13_217_000}}
    )
    now = datetime(2026, 12, 6, tzinfo=UTC)
    status.containers[0] = reconcile.attach_summary(status.containers[0], summary, finished_at=now)
    status.containers[1] = reconcile.attach_summary(status.containers[1], slow, finished_at=now)
    status = reconcile.aggregate(status, ref=ref, now=now)
    assert [c.frozen_time for c in status.containers] == ["149.6ms", "13.2s"]
    assert status.frozen_time == "13.2s"  # the longest freeze, for `kubectl get fcp -o wide`
    dumped = status.to_kube()
    assert dumped["containers"][1]["frozenTime"] == "13.2s" and dumped["frozenTime"] == "13.2s"
    assert frozen_time(AnalysisSummary()) == frozen_time(None) == ""
    assert (human_duration(850), human_duration(1_500), human_duration(2_000_000)) == (
        "850us",
        "1.5ms",
        "2.0s",
    )


def test_human_size() -> None:
    assert human_size(512) == "512 B"
    assert human_size(9700864) == "9.3 MiB"
    assert human_size(3 << 30) == "3.0 GiB"


def test_findings_of_the_attack_sample_are_counted_and_listed() -> None:
    truth = json.loads((DATA / "attack-revshell.truth.json").read_text())
    report = analyze(DATA / "attack-revshell.tar.zst", AnalyzerOptions())
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


def test_the_plugin_report_shows_the_freeze_and_a_late_archive() -> None:
    from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
    from forensic_checkpoint.cli.kubectl_forensic.report import render_report

    obj = {
        "metadata": {"namespace": "default", "name": "big"},
        "spec": {"podName": "bigmem"},
        "status": {
            "phase": "Failed",
            "reason": "Timeout",
            "nodeName": "realnode",
            "containers": [
                {
                    "name": "app",
                    "captureKey": "big-app",
                    "phase": "Failed",
                    "reason": "Timeout",
                    "message": "kubelet on realnode did not answer",
                    "archive": {
                        "path": "/ckpt/late.tar",
                        "sizeBytes": 2160269824,
                        "sha256": "ab" * 32,
                        "capturedAt": "2026-11-28T12:00:00Z",
                    },
                    "orphanArchive": True,
                },
                {
                    "name": "sidecar",
                    "captureKey": "big-sidecar",
                    "phase": "Completed",
                    "frozenTime": "13.2s",
                },
            ],
        },
    }
    text = render_report(ForensicCheckpoint.model_validate(obj))
    assert "archive: /ckpt/late.tar (2160269824 bytes)" in text
    assert "written by the kubelet after the capture failed" in text
    assert "frozen:  13.2s (the workload was paused)" in text
