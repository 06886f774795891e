"""Attaching the ForensicCheckpoint handlers of a :class:`CheckpointController` to a kopf
registry: one watch handler that feeds the in-flight captures' tasks (:mod:`.in_flight`) and
the index of the kept archives (:mod:`.kept_archives`), the deletion clean-up, and the hold
watches. No daemon or timer handler: kopf would keep a copy of every object's body for it."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.controller.capture.checkpoints import CheckpointController
from forensic_checkpoint.controller.capture.in_flight import InFlightCaptures
from forensic_checkpoint.controller.capture.kept_archives import KeptArchives

#: The watch handler's id; kopf logs "Handler 'watch' succeeded." at INFO for every event.
WATCH = "watch"


class _QuietWatch(logging.Filter):
    """Drops kopf's success line of the watch handler: one JSON line per watch event of every
    object (a status write is an event), a tenth of the operator's log work in a burst."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != f"Handler {WATCH!r} succeeded."


_QUIET_WATCH = _QuietWatch()


def register(
    registry: kopf.OperatorRegistry,
    controller: CheckpointController,
    kept: KeptArchives | None = None,
    in_flight: InFlightCaptures | None = None,
) -> InFlightCaptures:
    """Attach the handlers to ``registry`` (no module-level decorators: tests build their own);
    the in-flight captures' supervisor they feed."""
    info = ForensicCheckpoint.crd
    resource = (info.group, info.version, info.plural)
    captures = in_flight if in_flight is not None else InFlightCaptures(controller)
    posting: dict[str, kopf.OperatorSettings] = {}

    def remember(settings: kopf.OperatorSettings, **_: Any) -> None:
        posting["settings"] = settings

    async def observe(body: kopf.Body, type: str | None, logger: Any, **_: Any) -> None:
        # async: in the event loop, not in kopf's thread pool; the tasks inherit kopf's context.
        def task_logger() -> Any:
            # A capture's own logger posts its errors as Events, as a daemon's did.
            settings = posting.get("settings")
            return kopf.ObjectLogger(body=body, settings=settings) if settings else logger

        captures.observe(body, type, task_logger)
        if kept is not None:
            kept.observe(body, type)

    async def clean_up(body: kopf.Body, retry: int, logger: Any, **_: Any) -> None:
        await captures.stop(str(body.metadata.uid))  # the capture first stops asking its agent
        await controller.clean_up(body, retry, logger)

    async def sync_hold(body: kopf.Body, old: Any, new: Any, logger: Any, **_: Any) -> None:
        await controller.sync_hold(body, old, new, logger)

    async def stop_all(**_: Any) -> None:
        await captures.close()  # each resumes from its status at the next start

    kopf.on.startup(registry=registry)(remember)
    kopf.on.cleanup(registry=registry)(stop_all)
    logging.getLogger("kopf.objects").addFilter(_QUIET_WATCH)  # once: the same filter object
    kopf.on.event(*resource, id=WATCH, registry=registry)(observe)
    kopf.on.delete(*resource, id="cleanup", registry=registry)(clean_up)
    # The hold is a label or an annotation (domain.evidence.deletion.is_held); both are watched.
    for section in ("labels", "annotations"):
        kopf.on.field(
            *resource, id=f"hold-{section}", field=f"metadata.{section}", registry=registry
        )(sync_hold)
    return captures
