"""How long the operator waits for a node agent, and what a container's status says while it
cannot reach one (pure).

A ForensicCheckpoint whose agent is missing or stale waits: agents restart, and a heartbeat is
seconds away. It fails once nothing was requested within the agent-wait deadline, or once a
requested capture is overdue (the kubelet's deadline plus the grace has passed).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from forensic_checkpoint.api.forensiccheckpoint import (
    ContainerCapturePhase,
    ContainerStatus,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.domain.capture.agents import AGENT_IDENTITY_MISMATCH
from forensic_checkpoint.domain.capture.reconcile import overdue

#: Longest agent message kept in a container's status (the CRD's bound).
_MESSAGE_LIMIT = 1024


def stop_waiting_for_agent(
    status: ForensicCheckpointStatus,
    spec: ForensicCheckpointSpec,
    *,
    now: datetime,
    agent_wait: timedelta,
    capture_grace: timedelta,
) -> bool:
    """Whether an unavailable agent fails the checkpoint now rather than being waited for."""
    started = status.started_at or now
    requested = any(c.requested_at for c in status.containers)
    if not requested and now - started > agent_wait:
        return True
    return any(overdue(c, spec, now=now, grace=capture_grace) for c in status.containers)


def after_agent_error(
    container: ContainerStatus,
    spec: ForensicCheckpointSpec,
    *,
    reason: str | None,
    message: str,
    now: datetime,
    capture_grace: timedelta,
) -> ContainerStatus:
    """The container after its agent call failed: Failed with the agent's reason once the
    capture is overdue, or at once when the endpoint is not the node's agent (asking it again
    would only knock on the same wrong door); else unchanged but for the message (the next
    pass asks again)."""
    updated = container.model_copy(deep=True)
    updated.message = message[:_MESSAGE_LIMIT]
    if reason == AGENT_IDENTITY_MISMATCH or overdue(container, spec, now=now, grace=capture_grace):
        updated.phase = ContainerCapturePhase.FAILED
        updated.reason = reason
        updated.finished_at = now
    return updated
