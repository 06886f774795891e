"""Attaching the ForensicCheckpoint handlers of a :class:`CheckpointController` to a kopf
registry: the capture daemon, the deletion clean-up, and the hold watches."""

from __future__ import annotations

from typing import Any

import kopf

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.controller.capture.checkpoints import CheckpointController
from forensic_checkpoint.errors import ForensicCheckpointError


def register(registry: kopf.OperatorRegistry, controller: CheckpointController) -> None:
    """Attach the handlers to ``registry`` (no module-level decorators: tests build their own)."""
    info = ForensicCheckpoint.crd
    resource = (info.group, info.version, info.plural)

    async def drive(body: kopf.Body, stopped: kopf.DaemonStopped, logger: Any, **_: Any) -> None:
        try:
            await controller.drive(body, stopped, logger)
        except ForensicCheckpointError as exc:
            raise kopf.TemporaryError(exc.message, delay=5) from exc

    async def clean_up(body: kopf.Body, retry: int, logger: Any, **_: Any) -> None:
        await controller.clean_up(body, retry, logger)

    async def sync_hold(body: kopf.Body, old: Any, new: Any, logger: Any, **_: Any) -> None:
        await controller.sync_hold(body, old, new, logger)

    kopf.daemon(
        *resource,
        id="capture",
        registry=registry,
        cancellation_timeout=5.0,
        initial_delay=0,
    )(drive)
    kopf.on.delete(*resource, id="cleanup", registry=registry)(clean_up)
    # The hold is a label or an annotation (domain.evidence.deletion.is_held); both are watched.
    for section in ("labels", "annotations"):
        kopf.on.field(
            *resource, id=f"hold-{section}", field=f"metadata.{section}", registry=registry
        )(sync_hold)
