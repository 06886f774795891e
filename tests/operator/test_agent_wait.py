"""The operator's pure decisions around an unreachable agent and a legal hold
(domain/capture/agent_wait.py, domain/capture/checkpoint_events.py, domain/evidence/deletion.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from forensic_checkpoint.api.forensiccheckpoint import (
    ContainerCapturePhase,
    ContainerStatus,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.domain.capture import checkpoint_events
from forensic_checkpoint.domain.capture.agent_wait import after_agent_error, stop_waiting_for_agent
from forensic_checkpoint.domain.capture.reconcile import RUNTIME_REQUEST_TIMEOUT
from forensic_checkpoint.domain.evidence.deletion import (
    HOLD_KEY,
    hold_value_changed,
    requested_keys,
)

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
SPEC = ForensicCheckpointSpec(pod_name="web", timeout_seconds=30)
WAIT = timedelta(seconds=60)
GRACE = timedelta(minutes=5)
#: When a capture requested at T0 becomes overdue: the kubelet's deadline plus the grace.
OVERDUE = T0 + max(timedelta(seconds=30), RUNTIME_REQUEST_TIMEOUT) + GRACE


def _status(*, requested: bool) -> ForensicCheckpointStatus:
    container = ContainerStatus(
        name="app",
        capture_key="k-app",
        phase=ContainerCapturePhase.CAPTURING if requested else ContainerCapturePhase.PENDING,
        requested_at=T0 if requested else None,
    )
    return ForensicCheckpointStatus(started_at=T0, containers=[container])


def _stops(status: ForensicCheckpointStatus, now: datetime) -> bool:
    return stop_waiting_for_agent(status, SPEC, now=now, agent_wait=WAIT, capture_grace=GRACE)


def test_nothing_requested_waits_for_the_agent_until_the_agent_wait() -> None:
    status = _status(requested=False)
    assert not _stops(status, T0 + WAIT)
    assert _stops(status, T0 + WAIT + timedelta(seconds=1))


def test_a_requested_capture_waits_until_it_is_overdue() -> None:
    status = _status(requested=True)
    assert not _stops(status, T0 + WAIT * 2)
    assert not _stops(status, OVERDUE)
    assert _stops(status, OVERDUE + timedelta(seconds=1))


def test_an_agent_error_fails_the_container_only_once_overdue() -> None:
    (container,) = _status(requested=True).containers
    long_message = "x" * 2000

    waiting = after_agent_error(
        container, SPEC, reason="AgentUnavailable", message=long_message, now=T0,
        capture_grace=GRACE,
    )  # fmt: skip
    assert waiting.phase == ContainerCapturePhase.CAPTURING
    assert waiting.reason is None and waiting.finished_at is None
    assert len(waiting.message) == 1024

    later = OVERDUE + timedelta(seconds=1)
    failed = after_agent_error(
        container, SPEC, reason="AgentUnavailable", message="gone", now=later,
        capture_grace=GRACE,
    )  # fmt: skip
    assert (failed.phase, failed.reason, failed.message) == (
        ContainerCapturePhase.FAILED,
        "AgentUnavailable",
        "gone",
    )
    assert failed.finished_at == later
    assert container.phase == ContainerCapturePhase.CAPTURING  # the input is not changed


def test_hold_changes_and_the_keys_they_concern() -> None:
    assert hold_value_changed({}, {HOLD_KEY: "True "})
    assert not hold_value_changed({HOLD_KEY: "true"}, {HOLD_KEY: "TRUE", "other": "x"})
    assert not hold_value_changed(None, {HOLD_KEY: "false"})
    assert requested_keys(_status(requested=True)) == ["k-app"]
    assert requested_keys(_status(requested=False)) == []
    assert requested_keys(None) == []


def test_hold_and_clean_up_events() -> None:
    assert checkpoint_events.hold_changed(True, "n1").reason == "HoldSet"
    lifted = checkpoint_events.hold_changed(False, "n1")
    assert (lifted.reason, lifted.message) == ("HoldLifted", "legal hold lifted on node n1")
    assert checkpoint_events.archive_held().type == "Normal"
    assert checkpoint_events.archive_deleted(2, "n1").message == "deleted 2 file(s) on node n1"
    gave_up = checkpoint_events.archive_not_deleted("n1", "refused")
    assert (gave_up.type, gave_up.reason) == ("Warning", "ArchiveNotDeleted")
    assert gave_up.message == "gave up deleting the archives on n1: refused"
