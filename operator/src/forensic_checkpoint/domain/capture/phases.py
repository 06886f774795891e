"""How the agent's capture states relate to the ForensicCheckpoint's phases (pure).

The one place that maps them: a capture job's state to its container's phase, and the
containers' phases to the object's. A new state on either side is one row here.
"""

from __future__ import annotations

from collections.abc import Sequence

from forensic_checkpoint.api.agent import CaptureState
from forensic_checkpoint.api.forensiccheckpoint import ContainerCapturePhase, ContainerStatus, Phase

#: A finished container: the agent has nothing more to capture or analyse for it.
TERMINAL = (ContainerCapturePhase.COMPLETED, ContainerCapturePhase.FAILED)

_CONTAINER_PHASE = {
    # Queued on the agent is already past the operator's request: the capture is under way.
    CaptureState.QUEUED: ContainerCapturePhase.CAPTURING,
    CaptureState.CAPTURING: ContainerCapturePhase.CAPTURING,
    CaptureState.ANALYZING: ContainerCapturePhase.ANALYZING,
    # The agent sends the analysis summary with Completed, so nothing is left to wait for.
    CaptureState.COMPLETED: ContainerCapturePhase.COMPLETED,
    CaptureState.FAILED: ContainerCapturePhase.FAILED,
}

#: The object's phase for each unfinished container phase, least advanced first.
_CHECKPOINT_PHASE = {
    ContainerCapturePhase.PENDING: Phase.PENDING,
    ContainerCapturePhase.CAPTURING: Phase.CAPTURING,
    ContainerCapturePhase.ANALYZING: Phase.ANALYZING,
}
_RANK = {phase: rank for rank, phase in enumerate(_CHECKPOINT_PHASE)}


def container_phase(state: CaptureState) -> ContainerCapturePhase:
    """The phase of a container whose capture job is in ``state`` on the agent."""
    return _CONTAINER_PHASE[state]


def checkpoint_phase(containers: Sequence[ContainerStatus]) -> Phase:
    """The ForensicCheckpoint's phase: the least advanced unfinished container's, else Failed
    if any container failed, else Completed (Pending without containers)."""
    if not containers:
        return Phase.PENDING
    open_ = [c.phase for c in containers if c.phase not in TERMINAL]
    if open_:
        return _CHECKPOINT_PHASE[min(open_, key=_RANK.__getitem__)]
    if any(c.phase == ContainerCapturePhase.FAILED for c in containers):
        return Phase.FAILED
    return Phase.COMPLETED
