"""Attaching the ForensicCheckpoint handlers of a :class:`CheckpointController` to a kopf
registry: the capture daemon (it ends once only a kept archive is left), the
index of the kept archives (:mod:`.kept_archives`), the deletion clean-up, and the hold
watches."""

from __future__ import annotations

from typing import Any

import kopf

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.controller.capture.checkpoints import CheckpointController
from forensic_checkpoint.controller.capture.kept_archives import KeptArchives
from forensic_checkpoint.errors import ForensicCheckpointError


def register(
    registry: kopf.OperatorRegistry,
    controller: CheckpointController,
    kept: KeptArchives | None = None,
) -> None:
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
        # No ``when`` filter: kopf would stop (and cancel) the daemon as soon as its own final
        # status write arrives, before its Events are posted. It ends by itself instead
        # (``finished.needs_daemon``), at once for a kept archive after a restart.
    )(drive)
    if kept is not None:

        async def observe(body: kopf.Body, type: str | None, **_: Any) -> None:
            kept.observe(body, type)  # async: in the event loop, not in kopf's thread pool

        kopf.on.event(*resource, id="kept-archives", registry=registry)(observe)
    kopf.on.delete(*resource, id="cleanup", registry=registry)(clean_up)
    # The hold is a label or an annotation (domain.evidence.deletion.is_held); both are watched.
    for section in ("labels", "annotations"):
        kopf.on.field(
            *resource, id=f"hold-{section}", field=f"metadata.{section}", registry=registry
        )(sync_hold)
