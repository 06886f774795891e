"""What deleting a ForensicCheckpoint removes from its node (pure).

The archive is evidence; deleting the CR normally deletes it too, so that nodes do not fill up
with memory dumps nobody tracks. The label or annotation ``forensic-checkpoint.dev/hold: "true"``
keeps it (a legal or investigative hold); retention (:mod:`.retention`) honours the same hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forensic_checkpoint.api.base import GROUP
from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpointStatus

HOLD_KEY = f"{GROUP}/hold"


def is_held(metadata: Mapping[str, Any]) -> bool:
    """Whether the hold label or annotation is set to ``"true"``."""
    return any(_hold_value(metadata.get(section)) for section in ("labels", "annotations"))


def hold_value_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether one watched section (labels or annotations) changed its hold value."""
    return _hold_value(old) != _hold_value(new)


def _hold_value(values: Mapping[str, Any] | None) -> bool:
    return str((values or {}).get(HOLD_KEY, "")).strip().lower() == "true"


def requested_keys(status: ForensicCheckpointStatus | None) -> list[str]:
    """Capture keys the agent was asked for (a hold change concerns only these)."""
    if status is None:
        return []
    return [c.capture_key for c in status.containers if c.requested_at is not None]


def keys_to_delete(status: ForensicCheckpointStatus | None) -> list[str]:
    """Capture keys the agent may hold files for: every container it was (maybe) asked about.

    A container whose request was recorded but not confirmed is included as well: the agent may
    have accepted the job just before the operator stopped. Deleting an unknown key is harmless.
    """
    if status is None:
        return []
    return [c.capture_key for c in status.containers if not c.archive_deleted]
