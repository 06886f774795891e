"""The terminal conditions of a ForensicCheckpoint: ``Failed`` (as a Job's) and kstatus'
``Reconciling``/``Stalled``, so that ``kubectl wait`` returns at once on a failed capture
(it never returns early on ``Ready=False``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from forensic_checkpoint.api.conditions import ConditionStatus
from forensic_checkpoint.api.forensiccheckpoint import (
    ContainerCapturePhase,
    ContainerStatus,
    ForensicCheckpointStatus,
    Phase,
)
from forensic_checkpoint.domain.capture import reconcile, targets
from forensic_checkpoint.domain.conditions import find_condition

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REF = reconcile.CheckpointRef(name="c", namespace="ns", uid="uid-1", generation=3)
TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE


def _states(status: ForensicCheckpointStatus) -> dict[str, tuple[ConditionStatus, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_a_failed_checkpoint_is_failed_and_stalled_and_no_longer_reconciling() -> None:
    status = reconcile.record_targets(
        ForensicCheckpointStatus(),
        targets.Rejection(targets.POD_NOT_FOUND, "pod ns/x does not exist"),
        ref=REF,
        now=T0,
    )
    states = _states(status)
    assert states["Failed"] == (TRUE, "PodNotFound")
    assert states["Stalled"] == (TRUE, "PodNotFound")
    assert states["Reconciling"] == (FALSE, "Failed")
    assert states["Ready"] == (FALSE, "PodNotFound")
    failed = find_condition(status.conditions, "Failed")
    assert failed is not None and failed.message == "pod ns/x does not exist"
    assert {c.observed_generation for c in status.conditions} == {3}
    assert status.observed_generation == 3


@pytest.mark.parametrize("phase", [ContainerCapturePhase.PENDING, ContainerCapturePhase.CAPTURING])
def test_a_capture_in_progress_is_reconciling(phase: ContainerCapturePhase) -> None:
    status = ForensicCheckpointStatus(
        containers=[ContainerStatus(name="a", capture_key="k", phase=phase)]
    )
    states = _states(reconcile.aggregate(status, ref=REF, now=T0))
    assert states["Reconciling"][0] == TRUE
    assert states["Failed"][0] == FALSE and states["Stalled"][0] == FALSE


def test_a_completed_benign_checkpoint_says_so_in_every_condition() -> None:
    status = ForensicCheckpointStatus(
        containers=[
            ContainerStatus(name="a", capture_key="k", phase=ContainerCapturePhase.COMPLETED)
        ]
    )
    done = reconcile.aggregate(status, ref=REF, now=T0)
    assert done.phase == Phase.COMPLETED
    states = _states(done)
    assert states["Ready"] == (TRUE, "Completed")
    assert states["Reconciling"] == (FALSE, "Completed")
    assert states["Failed"] == (FALSE, "Completed")
    assert states["Stalled"] == (FALSE, "Completed")
    # Explicitly False, so that kubectl wait --for=condition=Suspicious=false returns.
    assert states["Suspicious"] == (FALSE, "NoHighSeverityFindings")


def test_waiting_for_an_agent_is_reconciling_with_the_reason() -> None:
    status = ForensicCheckpointStatus(
        containers=[ContainerStatus(name="a", capture_key="k", phase=ContainerCapturePhase.PENDING)]
    )
    waiting = reconcile.agent_waiting(status, message="no agent on node-1", ref=REF, now=T0)
    reconciling = find_condition(waiting.conditions, "Reconciling")
    assert reconciling is not None and reconciling.status == TRUE
    assert (reconciling.reason, reconciling.message) == ("AgentUnavailable", "no agent on node-1")
