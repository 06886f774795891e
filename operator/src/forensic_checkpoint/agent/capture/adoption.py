"""A job a restart left in Capturing: the kubelet is never called again; the agent looks,
briefly, for the archive the cut call may have left.

The restart closed the connection of the kubelet call, and the kubelet runs the dump on that
request's context: it cancelled the dump, unless the runtime had already written the archive.
So the agent looks for ``--restart-adopt-window`` seconds, not for the call's whole timeout. A
file that is still growing is waited for, up to the kubelet's own deadline for the call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from forensic_checkpoint.agent.capture.job_files import is_stable

#: Reason of a job whose kubelet call was cut short by an agent restart and whose archive never
#: appeared: the call may or may not have happened, so it is not repeated.
INTERRUPTED = "CaptureInterrupted"
#: Seconds a restarted agent looks for the archive of a call the restart cut: the kubelet
#: cancels the dump when its caller disconnects (containerd: "context canceled"), so only a
#: file the runtime had already written can appear, and it appears at once.
DEFAULT_RESTART_ADOPT_WINDOW = 5.0
REMEDIATION = "Re-create the ForensicCheckpoint (a new one) to capture the container again."


def wait_for_archive(
    find: Callable[[], Path | None],
    *,
    window: float,
    kubelet_end: datetime,
    poll: float,
    stopping: threading.Event,
) -> Path | None:
    """The whole archive ``find`` names within ``window`` seconds (or, for a file still
    growing, by ``kubelet_end``); ``None`` when none came, or when ``stopping`` is set."""
    window_end = datetime.now(UTC) + timedelta(seconds=window)
    while not stopping.is_set():
        archive = find()
        if archive is not None and is_stable(archive, poll):
            return archive
        deadline = window_end if archive is None else max(window_end, kubelet_end)
        if datetime.now(UTC) >= deadline:
            return None
        stopping.wait(poll)
    return None


def interrupted_message(target: str, checkpoint_dir: Path, window: float) -> str:
    return (
        f"the agent restarted during the kubelet call for {target}. The kubelet cancels the "
        "checkpoint when the calling agent dies (containerd logs 'context canceled'), and no "
        f"archive was written: none appeared in {checkpoint_dir} within {window:g} s of the "
        "restart. The call is not repeated automatically"
    )
