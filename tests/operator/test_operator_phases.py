"""The one mapping from the agent's capture states to the ForensicCheckpoint's phases."""

from __future__ import annotations

import pytest

from forensic_checkpoint.api.agent import CaptureState
from forensic_checkpoint.api.forensiccheckpoint import ContainerCapturePhase, ContainerStatus, Phase
from forensic_checkpoint.domain.capture.phases import TERMINAL, checkpoint_phase, container_phase

P = ContainerCapturePhase


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        (CaptureState.QUEUED, P.CAPTURING),
        (CaptureState.CAPTURING, P.CAPTURING),
        (CaptureState.ANALYZING, P.ANALYZING),
        (CaptureState.COMPLETED, P.COMPLETED),
        (CaptureState.FAILED, P.FAILED),
    ],
)
def test_each_capture_state_has_one_container_phase(
    state: CaptureState, phase: ContainerCapturePhase
) -> None:
    assert container_phase(state) == phase


def test_every_capture_state_is_mapped_and_finished_ones_are_terminal() -> None:
    for state in CaptureState:
        assert (container_phase(state) in TERMINAL) == state.terminal, state


def _containers(*phases: ContainerCapturePhase) -> list[ContainerStatus]:
    return [
        ContainerStatus(name=f"c{i}", capture_key=f"k-c{i}", phase=p) for i, p in enumerate(phases)
    ]


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ((), Phase.PENDING),
        ((P.PENDING, P.ANALYZING), Phase.PENDING),
        ((P.ANALYZING, P.CAPTURING, P.COMPLETED), Phase.CAPTURING),
        ((P.ANALYZING, P.FAILED), Phase.ANALYZING),  # the slowest unfinished container decides
        ((P.COMPLETED, P.FAILED), Phase.FAILED),
        ((P.COMPLETED, P.COMPLETED), Phase.COMPLETED),
    ],
)
def test_the_checkpoint_phase_follows_its_containers(
    phases: tuple[ContainerCapturePhase, ...], expected: Phase
) -> None:
    assert checkpoint_phase(_containers(*phases)) == expected
