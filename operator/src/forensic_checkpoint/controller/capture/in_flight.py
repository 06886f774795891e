"""The in-flight captures: one asyncio task per ForensicCheckpoint whose capture (or export, or
late-archive watch) is under way, keyed by the object's uid; none for any other object.

This is what a kopf daemon did, without kopf's daemon machinery: kopf keeps a full copy of the
body of EVERY object of a resource that has a daemon handler (its ``live_fresh_body``), also of
the thousands of finished ones whose daemon will never run again, and the bodies are big (the
custody chain, the analysis summary). Here only an in-flight object's latest body is held, and
only while its task runs.

The semantics are the daemon's: the watch (kopf's ``on.event``, its first listing after a
restart included) starts a task for an object that needs one (``finished.needs_daemon``), so
an operator restart resumes every capture from its status; the task re-runs after an error
(5 s after a ``ForensicCheckpointError``, 60 s after anything else, as kopf retried); a
deletion stops it (the clean-up waits for it, then cancels it after ``cancellation_timeout``);
and a task that ended by itself is not started again by a late event of an earlier status
write (kopf never respawned such a daemon). Tasks are started from kopf's handlers (so they
inherit its context: Events are posted as the daemons' were) and stopped by its clean-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpointStatus
from forensic_checkpoint.controller import metrics
from forensic_checkpoint.controller.capture.ports import Stopped
from forensic_checkpoint.domain.capture import finished
from forensic_checkpoint.errors import ForensicCheckpointError

#: Seconds before a task re-runs after a ForensicCheckpointError (kopf's TemporaryError delay).
RETRY_DELAY = 5.0
#: Seconds before a task re-runs after an unexpected error (kopf's default backoff).
ERROR_BACKOFF = 60.0
#: How long a stopped task may take to end before it is cancelled.
CANCELLATION_TIMEOUT = 5.0
#: How long an object whose task ended by itself is not started again: events of its earlier
#: status writes may still arrive after its last one was written.
ENDED_MEMORY_SECONDS = 300.0


class Stopper:
    """The task's stop flag: what the controller waits on between passes (kopf's
    ``DaemonStopped``: falsy until set, ``wait(timeout)`` returns once set or timed out)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self._event.is_set()


class Driver(Protocol):
    """What runs one object's capture (:meth:`.checkpoints.CheckpointController.drive`)."""

    async def drive(
        self, body: Callable[[], Mapping[str, Any]], stopped: Stopped, logger: logging.Logger
    ) -> None: ...


class _Run:
    """One in-flight object: its latest body (replaced on each event), its stop flag, its task."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.stopper = Stopper()
        self.task: asyncio.Task[None] | None = None

    def current(self) -> Mapping[str, Any]:
        return self.body


class InFlightCaptures:
    def __init__(
        self,
        controller: Driver,
        *,
        clock: Callable[[], datetime] | None = None,
        retry_delay: float = RETRY_DELAY,
        error_backoff: float = ERROR_BACKOFF,
    ) -> None:
        self._controller = controller
        self._clock = clock or (lambda: datetime.now(UTC))
        self._retry_delay = retry_delay
        self._error_backoff = error_backoff
        self._runs: dict[str, _Run] = {}
        #: uid -> monotonic time its task ended by itself (pruned after ENDED_MEMORY_SECONDS).
        self._ended: dict[str, float] = {}

    def running(self) -> list[str]:
        """The uids with a task (tests and metrics)."""
        return list(self._runs)

    # --- fed by the watch ----------------------------------------------------------------

    def observe(
        self,
        body: Mapping[str, Any],
        event_type: str | None,
        logger: logging.Logger | Callable[[], logging.Logger],
    ) -> None:
        """One watch event: keep a running task's body current, stop it on deletion, or start
        one for an object that needs it. Called from kopf's ``on.event`` handler."""
        metadata = body.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        if not uid:
            return
        run = self._runs.get(uid)
        if event_type == "DELETED" or metadata.get("deletionTimestamp"):
            self._ended.pop(uid, None)
            if run is not None:
                run.body = body
                run.stopper.set()  # the clean-up handler waits for it (:meth:`stop`)
            return
        if run is not None:
            run.body = body
            return
        self._prune()
        if uid in self._ended or not self._needs_task(body):
            return
        run = _Run(body)
        self._runs[uid] = run
        metrics.CAPTURE_TASKS.set(len(self._runs))
        # ``logger`` may be a factory: the object's logger is made only for a task.
        task_logger = logger if isinstance(logger, logging.Logger) else logger()
        run.task = asyncio.get_running_loop().create_task(self._drive(uid, run, task_logger))

    def _needs_task(self, body: Mapping[str, Any]) -> bool:
        try:
            status = ForensicCheckpointStatus.model_validate(body.get("status") or {})
        except ValidationError:
            return True  # the controller's own pass says what is wrong
        return finished.needs_daemon(status, self._clock())

    def _prune(self) -> None:
        horizon = time.monotonic() - ENDED_MEMORY_SECONDS
        for uid in [u for u, at in self._ended.items() if at < horizon]:
            del self._ended[uid]

    # --- one object's task ---------------------------------------------------------------

    async def _drive(self, uid: str, run: _Run, logger: logging.Logger) -> None:
        try:
            while not run.stopper:
                try:
                    await self._controller.drive(run.current, run.stopper, logger)
                    break
                except ForensicCheckpointError as exc:
                    logger.error("%s; retrying in %s s", exc.message, self._retry_delay)
                    await run.stopper.wait(self._retry_delay)
                except Exception:
                    logger.exception("capture task failed; retrying in %s s", self._error_backoff)
                    await run.stopper.wait(self._error_backoff)
        finally:
            if self._runs.get(uid) is run:
                del self._runs[uid]
                metrics.CAPTURE_TASKS.set(len(self._runs))
            if not run.stopper:
                self._ended[uid] = time.monotonic()

    # --- stopping ------------------------------------------------------------------------

    async def stop(self, uid: str, timeout: float = CANCELLATION_TIMEOUT) -> None:
        """Stop ``uid``'s task and wait for it (cancelled after ``timeout``): a deleted
        object's clean-up starts once its capture no longer runs."""
        run = self._runs.get(uid)
        if run is None or run.task is None:
            return
        run.stopper.set()
        await _finish(run.task, timeout)

    async def close(self, timeout: float = CANCELLATION_TIMEOUT) -> None:
        """Stop every task (the operator stops): each resumes from its status at the next
        start."""
        runs = list(self._runs.values())
        for run in runs:
            run.stopper.set()
        await asyncio.gather(*(_finish(r.task, timeout) for r in runs if r.task is not None))


async def _finish(task: asyncio.Task[None], timeout: float) -> None:
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
