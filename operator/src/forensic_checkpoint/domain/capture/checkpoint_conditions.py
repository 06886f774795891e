"""The conditions of a ForensicCheckpoint, derived from its phase and containers (pure).

``Ready``, ``Captured``, ``Analyzed`` and ``Suspicious`` say what the capture gave; ``Failed``
(as a Job's) and kstatus' ``Reconciling``/``Stalled`` say whether it is over. ``kubectl wait``
never returns early on ``Ready=False``, so a failure must make some condition True at once:
``Failed`` and ``Stalled`` turn True, ``Reconciling`` False, on a Failed checkpoint.
"""

from __future__ import annotations

from datetime import datetime

from forensic_checkpoint.api.conditions import (
    ANALYZED,
    CAPTURED,
    FAILED,
    READY,
    RECONCILING,
    STALLED,
    Condition,
    ConditionStatus,
)
from forensic_checkpoint.api.forensiccheckpoint import (
    ContainerCapturePhase,
    ForensicCheckpointStatus,
    Phase,
)
from forensic_checkpoint.domain.capture.suspicion import SUSPICIOUS, verdict
from forensic_checkpoint.domain.conditions import set_condition

#: (type, status, reason, message) of one condition.
_Verdict = tuple[str, ConditionStatus, str, str]


def conditions(
    status: ForensicCheckpointStatus, *, generation: int | None, now: datetime
) -> list[Condition]:
    """``status.conditions`` brought up to date from the phase and the containers."""
    verdicts = [_ready(status), _captured(status), _analyzed(status), *_progress(status)]
    suspicion = verdict(status)
    if suspicion is not None:
        value = ConditionStatus.TRUE if suspicion.suspicious else ConditionStatus.FALSE
        verdicts.append((SUSPICIOUS, value, suspicion.reason, suspicion.message))
    result = list(status.conditions)
    for type_, value, reason, message in verdicts:
        result = set_condition(
            result,
            type_=type_,
            status=value,
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )
    return result


def _failed_reason(status: ForensicCheckpointStatus) -> str:
    return status.reason or status.phase.value


def _ready(status: ForensicCheckpointStatus) -> _Verdict:
    if status.phase == Phase.COMPLETED:
        return READY, ConditionStatus.TRUE, "Completed", status.message
    if status.phase == Phase.FAILED:
        return READY, ConditionStatus.FALSE, _failed_reason(status), status.message
    return READY, ConditionStatus.FALSE, status.phase.value, status.message or "in progress"


def _captured(status: ForensicCheckpointStatus) -> _Verdict:
    containers = status.containers
    captured = [c for c in containers if c.archive is not None]
    if containers and len(captured) == len(containers):
        return CAPTURED, ConditionStatus.TRUE, "Captured", f"{len(captured)} archive(s) on the node"
    if status.phase == Phase.FAILED:
        return CAPTURED, ConditionStatus.FALSE, _failed_reason(status), status.message
    return CAPTURED, ConditionStatus.UNKNOWN, status.phase.value, ""


def _analyzed(status: ForensicCheckpointStatus) -> _Verdict:
    containers = status.containers
    if containers and all(c.phase == ContainerCapturePhase.COMPLETED for c in containers):
        return ANALYZED, ConditionStatus.TRUE, "Analyzed", "summary in status.containers[].summary"
    if status.phase == Phase.FAILED:
        return ANALYZED, ConditionStatus.FALSE, _failed_reason(status), status.message
    return ANALYZED, ConditionStatus.UNKNOWN, status.phase.value, ""


def _progress(status: ForensicCheckpointStatus) -> list[_Verdict]:
    """``Failed``, ``Reconciling`` and ``Stalled``: whether the capture is still under way. A
    Completed or Failed checkpoint is never worked on again (its spec is immutable)."""
    true, false = ConditionStatus.TRUE, ConditionStatus.FALSE
    if status.phase == Phase.FAILED:
        reason = _failed_reason(status)
        return [
            (FAILED, true, reason, status.message),
            (RECONCILING, false, Phase.FAILED.value, "the capture failed and is not retried"),
            (STALLED, true, reason, status.message),
        ]
    if status.phase == Phase.COMPLETED:
        return [
            (FAILED, false, Phase.COMPLETED.value, ""),
            (RECONCILING, false, Phase.COMPLETED.value, "checkpointed and analysed"),
            (STALLED, false, Phase.COMPLETED.value, ""),
        ]
    phase = status.phase.value
    return [
        (FAILED, false, phase, ""),
        (RECONCILING, true, status.reason or phase, status.message or f"{phase.lower()}"),
        (STALLED, false, phase, ""),
    ]
