"""The Suspicious condition and its once-only Warning event, decided from finding summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forensic_checkpoint.api.conditions import ConditionStatus
from forensic_checkpoint.api.forensiccheckpoint import (
    AnalysisSummary,
    ContainerCapturePhase,
    ContainerStatus,
    FindingSummary,
    ForensicCheckpointStatus,
    Phase,
)
from forensic_checkpoint.domain.capture import reconcile
from forensic_checkpoint.domain.capture.checkpoint_events import transition_events
from forensic_checkpoint.domain.capture.suspicion import verdict
from forensic_checkpoint.domain.conditions import find_condition

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
REF = reconcile.CheckpointRef(name="x", namespace="default", uid="uid", generation=1)

REVSHELL = FindingSummary(
    rule="reverse-shell", severity="critical", title="t", id="reverse-shell:14"
)
TMP_EXEC = FindingSummary(rule="exec-from-tmp", severity="high", title="t")
PORT = FindingSummary(rule="listening-port", severity="info", title="t")


def _container(
    name: str, phase: ContainerCapturePhase, *findings: FindingSummary
) -> ContainerStatus:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    summary = (
        AnalysisSummary(findings=counts, top_findings=list(findings))
        if phase == ContainerCapturePhase.COMPLETED
        else None
    )
    return ContainerStatus(name=name, capture_key=f"k-{name}", phase=phase, summary=summary)


DONE = ContainerCapturePhase.COMPLETED
CAPTURING = ContainerCapturePhase.CAPTURING
FAILED = ContainerCapturePhase.FAILED


@pytest.mark.parametrize(
    ("containers", "expected"),
    [
        # Nothing analysed yet: no answer, no condition.
        ([_container("a", CAPTURING)], None),
        # Only low findings, but another container still capturing: not known yet.
        ([_container("a", DONE, PORT), _container("b", CAPTURING)], None),
        # One alarming container decides at once, even while another is still capturing.
        (
            [_container("a", DONE, REVSHELL, PORT), _container("b", CAPTURING)],
            (True, "HighSeverityFindings", "1 critical finding(s): reverse-shell"),
        ),
        (
            [_container("a", DONE, TMP_EXEC), _container("b", DONE, REVSHELL, TMP_EXEC)],
            (
                True,
                "HighSeverityFindings",
                "1 critical, 2 high finding(s): exec-from-tmp, reverse-shell",
            ),
        ),
        # Completed without high or critical findings.
        (
            [_container("a", DONE, PORT), _container("b", DONE)],
            (False, "NoHighSeverityFindings", "no high or critical finding"),
        ),
        # A failed capture is not Completed: no verdict from the one that worked.
        ([_container("a", DONE, PORT), _container("b", FAILED)], None),
    ],
)
def test_verdict_table(
    containers: list[ContainerStatus], expected: tuple[bool, str, str] | None
) -> None:
    status = reconcile.aggregate(ForensicCheckpointStatus(containers=containers), ref=REF, now=T0)
    got = verdict(status)
    assert ((got.suspicious, got.reason, got.message) if got else None) == expected
    condition = find_condition(status.conditions, "Suspicious")
    if expected is None:
        assert condition is None
    else:
        assert condition is not None
        assert condition.status == (ConditionStatus.TRUE if expected[0] else ConditionStatus.FALSE)
        assert condition.reason == expected[1]


def test_the_rule_list_in_the_message_is_bounded() -> None:
    many = [FindingSummary(rule=f"rule-{i}", severity="high") for i in range(8)]
    status = ForensicCheckpointStatus(containers=[_container("a", DONE, *many)])
    got = verdict(status)
    assert got is not None
    assert got.message == "8 high finding(s): rule-0, rule-1, rule-2, rule-3, rule-4, ..."


def test_the_warning_event_is_posted_once_when_the_condition_turns_true() -> None:
    pending = reconcile.aggregate(
        ForensicCheckpointStatus(containers=[_container("a", CAPTURING)]), ref=REF, now=T0
    )
    alarming = pending.model_copy(deep=True)
    alarming.containers = [_container("a", DONE, REVSHELL)]
    done = reconcile.aggregate(alarming, ref=REF, now=T0 + timedelta(seconds=2))
    assert done.phase == Phase.COMPLETED
    warnings = [e for e in transition_events(pending, done) if e.reason == "Suspicious"]
    assert [(e.type, e.message) for e in warnings] == [
        ("Warning", "1 critical finding(s): reverse-shell")
    ]
    # The next reconcile (or a restarted operator reading the stored status) posts nothing.
    again = reconcile.aggregate(done, ref=REF, now=T0 + timedelta(seconds=4))
    assert transition_events(done, again) == []
    reread = ForensicCheckpointStatus.model_validate(done.to_kube())
    assert not [e for e in transition_events(reread, again) if e.reason == "Suspicious"]
    suspicious = find_condition(again.conditions, "Suspicious")
    assert suspicious is not None and suspicious.last_transition_time == T0 + timedelta(seconds=2)


def test_a_benign_completion_posts_no_warning() -> None:
    pending = reconcile.aggregate(
        ForensicCheckpointStatus(containers=[_container("a", CAPTURING)]), ref=REF, now=T0
    )
    benign = pending.model_copy(deep=True)
    benign.containers = [_container("a", DONE, PORT)]
    done = reconcile.aggregate(benign, ref=REF, now=T0)
    events = transition_events(pending, done)
    assert all(e.type == "Normal" for e in events), events
    condition = find_condition(done.conditions, "Suspicious")
    assert condition is not None and condition.status == ConditionStatus.FALSE
