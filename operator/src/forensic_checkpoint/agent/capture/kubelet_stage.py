"""The kubelet call of a Queued job, or the adoption of a job a restart left in Capturing, run by
a capture worker (:mod:`.workers`); it ends with the archive landed (the job Analyzing) or the
job failed.

Invariants:

- exactly one kubelet call per capture key, ever: the job record says ``Capturing`` with the
  call time on disk before the call is made, and a job found in that state after a restart is
  never called again; the agent looks, briefly, for an archive the kubelet wrote since the call
  instead (:mod:`.adoption`; the kubelet cancels the dump when its caller dies, so usually there
  is none);
- no archive is left on the node unaccounted for: when the agent gives up on a call that
  reached the kubelet, the job watches for a late archive (:mod:`.orphans` attaches it to the
  job, or deletes it under ``--orphan-archives=delete``).

Before the call, :mod:`.disk_floor` may refuse it; a capture deleted while its call runs has
what the call writes deleted when it lands (:mod:`.deleted_in_flight`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from forensic_checkpoint.agent import paths
from forensic_checkpoint.agent.capture import adoption, deleted_in_flight, job_files, timings
from forensic_checkpoint.agent.capture.deleted_in_flight import DELETED_WHILE_CAPTURING
from forensic_checkpoint.agent.capture.disk_floor import FloorGate
from forensic_checkpoint.agent.jobs import JobRecord, utcnow
from forensic_checkpoint.agent.kubelet.client import KubeletCallAbandoned, kubelet_deadline
from forensic_checkpoint.api.agent import CaptureState
from forensic_checkpoint.domain.failures.model import FailureReason
from forensic_checkpoint.errors import CaptureError, KubeletError, KubeletRuntimeError

if TYPE_CHECKING:
    from forensic_checkpoint.agent.capture.service import CaptureService, Checkpointer

log = logging.getLogger(__name__)


class KubeletStage:
    """Holds the service (its store, metrics, settings and :meth:`~CaptureService.finish`), the
    kubelet client factory, the disk floor and the service's stop event."""

    def __init__(
        self,
        service: CaptureService,
        kubelet: Callable[[], Checkpointer],
        floor: FloorGate,
        stopping: threading.Event,
    ) -> None:
        self._service = service
        self._kubelet = kubelet
        self._floor = floor
        self._stopping = stopping

    def capture(self, record: JobRecord) -> JobRecord | None:
        """The floor check (its reservation held until the call has ended) and the call."""
        refusal = self._floor.admit(record.status.key)
        if refusal is not None:
            log.warning("capture %s: %s", record.status.key, refusal)
            return self._service.finish(
                record,
                reason=FailureReason.INSUFFICIENT_DISK_SPACE.value,
                message=refusal,
                remediation="free space on the node (delete or export old ForensicCheckpoints, "
                "tighten retention) or lower the chart's agent.minFreeBytes/minFreePercent",
            )
        try:
            return self._call_kubelet(record)
        finally:
            self._floor.release(record.status.key)  # landed by now, or none will

    def adopt(self, record: JobRecord) -> JobRecord | None:
        """A job left in Capturing by a restart: see :mod:`.adoption`."""
        service = self._service
        request = record.request
        called_at = record.kubelet_called_at or record.status.started_at or utcnow()
        kubelet_end = called_at + timedelta(seconds=self._kubelet_window(record))
        started = time.monotonic()
        archive = adoption.wait_for_archive(
            lambda: job_files.unclaimed_archive(
                service.store, service.checkpoint_dir, record, called_at
            ),
            window=service.restart_adopt_window,
            kubelet_end=kubelet_end,
            poll=service.poll_interval,
            stopping=self._stopping,
        )
        if archive is not None:
            log.info("capture %s: adopted %s written after the restart", record.status.key, archive)
            record.status.kubelet_status_code = None
            return self._record_archive(record, archive, started)
        if self._stopping.is_set():
            return None  # the next start looks again
        log.warning(
            "capture %s: the restart cut the kubelet call; no archive appeared", request.key
        )
        target = f"{request.pod_namespace}/{request.pod_name}/{request.container}"
        return service.finish(
            record,
            reason=adoption.INTERRUPTED,
            message=adoption.interrupted_message(
                target, service.checkpoint_dir, service.restart_adopt_window
            ),
            remediation=adoption.REMEDIATION,
        )

    def _call_kubelet(self, record: JobRecord) -> JobRecord | None:
        service = self._service
        request = record.request
        now = utcnow()
        with service.store.locked():
            if self._deleted_mark(record) is not None:
                return service.finish(
                    record,
                    reason=DELETED_WHILE_CAPTURING,
                    message="deleted before the kubelet was called",
                )
            record.status.state = CaptureState.CAPTURING
            record.status.started_at = now
            record.kubelet_called_at = now
            record.status.timings = timings.queued(record, now)
            service.metrics.observe_stage("queued", record.status.timings.queued_ms)
            service.store.save(record)  # on disk BEFORE the call: see the module docstring
        started = time.monotonic()
        try:
            location = self._kubelet().checkpoint(
                request.pod_namespace,
                request.pod_name,
                request.container,
                request.timeout_seconds,
            )
        except KubeletError as exc:
            timings.kubelet_done(record, started, service.metrics)
            code = str(exc.status_code) if exc.status_code is not None else "none"
            service.metrics.kubelet_errors.labels(code=code).inc()
            log.warning("capture %s: %s: %s", record.status.key, exc.reason, exc.message)
            if isinstance(exc, KubeletRuntimeError):
                record.status.criu_log_excerpt = (exc.excerpt or "")[:8192] or None
            message = exc.message
            self._deleted_mark(record)
            if isinstance(exc, KubeletCallAbandoned):
                message += self._watch_late_archive(record)
            return service.finish(
                record,
                reason=exc.reason,
                message=message,
                remediation=exc.remediation,
                kubelet_status_code=exc.status_code,
            )
        record.status.kubelet_status_code = 200
        try:
            archive = paths.resolve_archive(location, service.checkpoint_dir)
        except CaptureError as exc:
            return service.finish(record, reason=exc.reason, message=exc.message)
        return self._record_archive(record, archive, started)

    def _deleted_mark(self, record: JobRecord) -> datetime | None:
        """Copy a DELETE's mark (saved by another thread meanwhile) onto ``record``."""
        stored = self._service.store.get(record.status.key)
        if stored is not None and stored.deleted_while_capturing_at is not None:
            record.deleted_while_capturing_at = stored.deleted_while_capturing_at
            record.status.held = stored.status.held
        return record.deleted_while_capturing_at

    def _landed_after_delete(self, record: JobRecord, archive: Path) -> JobRecord:
        """The kubelet answered a call whose capture was deleted meanwhile (store locked; the
        hash holds the lock for seconds, on this rare path only)."""
        service = self._service
        try:
            deleted_in_flight.discard(record, archive, service.node_name, utcnow())
        except OSError as exc:
            return service.finish(
                record, reason="ArchiveUnreadable", message=f"cannot read archive {archive}: {exc}"
            )
        deleted_in_flight.report(service.metrics, record, archive, "deleted")
        return service.finish(
            record, reason=DELETED_WHILE_CAPTURING, message=record.status.message or ""
        )

    def _watch_late_archive(self, record: JobRecord) -> str:
        """Mark ``record`` as watching for a late archive (saved by the caller with the failure);
        the text to append to its message."""
        window = self._service.late_archive_window
        if record.deleted_while_capturing_at is not None:
            # Deleted mid-capture: the dump may land until the kubelet's own deadline.
            window = max(window, self._kubelet_window(record))
        if window <= 0:
            return ""
        until = utcnow() + timedelta(seconds=window)
        record.status.late_archive_watch_until = until
        return (
            "; the agent closed the connection, so the kubelet cancels the dump unless the "
            f"archive was already written: the agent watches {self._service.checkpoint_dir} "
            f"until {until.strftime('%H:%M:%SZ')} and keeps a late archive with this capture"
        )

    def _kubelet_window(self, record: JobRecord) -> float:
        """Seconds the kubelet may take for ``record``'s call, plus the margin."""
        service = self._service
        return (
            kubelet_deadline(
                record.request.timeout_seconds, service.kubelet_runtime_request_timeout
            )
            + service.kubelet_timeout_margin
        )

    def _record_archive(self, record: JobRecord, archive: Path, started: float) -> JobRecord | None:
        """The kubelet's archive has landed: the job goes on to its analysis, which hashes the
        archive beside the analysis (:meth:`CaptureService.record_hash`). A capture deleted
        meanwhile has its archive hashed and deleted here instead."""
        service = self._service
        timings.kubelet_done(record, started, service.metrics)
        service.metrics.capture_seconds.observe(time.monotonic() - started)
        try:
            archive.chmod(0o600)
        except OSError as exc:
            return service.finish(
                record, reason="ArchiveUnreadable", message=f"cannot read archive {archive}: {exc}"
            )
        with service.store.locked():  # a DELETE may have marked the job meanwhile
            if self._deleted_mark(record) is not None:
                if deleted_in_flight.discards(record):
                    return self._landed_after_delete(record, archive)
                deleted_in_flight.report(service.metrics, record, archive, "kept")
            record.landed_archive = str(archive)
            record.status.state = CaptureState.ANALYZING
            service.store.save(record)
            service.hash_for(record)  # at once, whether or not an analysis worker is free
        log.info("capture %s: archive %s landed", record.status.key, archive)
        return record
