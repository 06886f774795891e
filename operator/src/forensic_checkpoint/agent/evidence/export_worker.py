"""Exports captures off the node, one at a time, resuming across agent restarts.

A job is due once it has ended with its archive (Completed, or Failed after its archive was
recorded: the archive is evidence even when its analysis failed). With ``duringAnalysis`` the
archive goes first, as soon as its sha256 is recorded: an Analyzing job with a recorded archive
and an active ``export.phase`` is due for an archive-only pass beside the analysis, and the pass
after the job's end adds the report and the manifest without reading the archive again. A
capture deleted during its upload (its archive deleted) has the upload aborted and its state
file and spool removed, and an object completed just before the deletion is removed too.

The job records on disk are the queue: a job whose ``export.phase`` is Pending, Exporting
or Retrying (and whose retry time has come) is due. A job found in ``Exporting`` after a restart is
due at once, and :class:`~forensic_checkpoint.agent.evidence.export.Exporter` resumes its multipart
upload from its own state file (``<state-dir>/exports``). A failed attempt never touches the local
archive: transient errors (the store unreachable, 5xx, a 4xx such as ``NoSuchBucket`` that an admin
can fix) are retried with capped exponential backoff; an integrity mismatch or a vanished archive is
final (``Failed``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

from forensic_checkpoint.agent import paths
from forensic_checkpoint.agent.background import BackgroundPass
from forensic_checkpoint.agent.evidence import custody_facts
from forensic_checkpoint.agent.evidence.export import ExportCancelled, Exporter, ExportOutcome
from forensic_checkpoint.agent.evidence.export_config import ExportConfig
from forensic_checkpoint.agent.evidence.s3 import S3RequestError
from forensic_checkpoint.agent.jobs import JobRecord, JobStore, utcnow
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.api.agent import CaptureState, ExportPhase, ExportProgress
from forensic_checkpoint.api.custody import EvidenceTarget
from forensic_checkpoint.errors import (
    CaptureError,
    ConfigError,
    ForensicCheckpointError,
    IntegrityError,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Reason of an export that cannot happen because retention (or a human) removed the archive.
ARCHIVE_GONE = "ArchiveDeleted"


class JobHooks(Protocol):
    """The capture service's hooks (``agent.capture.service.CaptureService``)."""

    on_finished: list[Callable[[], None]]
    on_hashed: list[Callable[[], None]]


def export_due(record: JobRecord, now: datetime, *, during_analysis: bool = False) -> bool:
    """Whether ``record`` has an export pass to run now: the archive-only one while it is
    Analyzing (with ``during_analysis``), the last one once it has ended with its archive."""
    export, status = record.status.export, record.status
    if export is None or not export.phase.active or status.archive_deleted_at is not None:
        return False
    if status.archive is None:
        return False
    if status.state is CaptureState.ANALYZING:
        if record.archive_exported or not during_analysis:
            return False
    elif status.state not in {CaptureState.COMPLETED, CaptureState.FAILED}:
        return False
    return export.next_attempt_at is None or export.next_attempt_at <= now


def abandoned(record: JobRecord) -> bool:
    """An export that was under way when its archive was deleted (the capture was deleted)."""
    export = record.status.export
    return (
        export is not None and export.phase.active and record.status.archive_deleted_at is not None
    )


class ExportWorker(BackgroundPass):
    """One thread; :meth:`run_due` does one pass synchronously (tests call it directly)."""

    name = "export"
    #: The upload runs beside the analysis, which gates Completed: on a busy node it yields.
    nice = 10

    def __init__(
        self,
        *,
        store: JobStore,
        config: ExportConfig,
        node_name: str,
        checkpoint_dir: Path,
        metrics: AgentMetrics,
        exporter_factory: Callable[[ExportConfig], Exporter] = Exporter,
        retry_base_seconds: float = 30.0,
        retry_max_seconds: float = 900.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.config = config
        self.node_name = node_name
        self.checkpoint_dir = checkpoint_dir
        self.metrics = metrics
        self._factory = exporter_factory
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self._clock = clock
        self._busy = threading.Lock()
        super().__init__()

    def run_pass(self) -> None:
        self.run_due()

    def wait_seconds(self) -> float:
        # Re-check at least every few seconds so that a retry time is honoured.
        return min(5.0, self.retry_base_seconds)

    def run_due(self) -> int:
        """Export every due job once; the number attempted."""
        attempted = 0
        with self._busy:
            for key in self.candidates():
                if self._stop.is_set():
                    break
                record = self.store.get(key)
                if record is not None and abandoned(record):
                    self._abandon(key, "the capture's archive was deleted before its export")
                elif record is not None and self._due(record):
                    self._attempt(key)
                    attempted += 1
        return attempted

    def follow(self, service: JobHooks) -> None:
        """Be woken when ``service`` ends a job (and, with ``duringAnalysis``, when it records
        an archive's sha256)."""
        service.on_finished.append(self.wake)
        if self.config.during_analysis:
            service.on_hashed.append(self.wake)

    def _due(self, record: JobRecord) -> bool:
        return export_due(record, self._clock(), during_analysis=self.config.during_analysis)

    def candidates(self) -> list[str]:
        """The jobs whose export may be due, from the store's lines in memory: this pass runs
        every few seconds, and reading every kept job's record file each time cost CPU in
        proportion to the archives kept on the node. (An export whose archive was deleted is a
        candidate too: its upload is abandoned.)"""
        return [
            key
            for key, line in self.store.lines().items()
            if line.digest.export_phase is not None and line.digest.export_phase.active
        ]

    def _begin(self, key: str) -> JobRecord | None:
        with self.store.locked():
            record = self.store.get(key)
            if record is None or not self._due(record):
                return None
            assert record.status.export is not None  # noqa: S101 - export_due checked it
            record.status.export.phase = ExportPhase.EXPORTING
            record.status.export.attempts += 1
            record.status.export.next_attempt_at = None
            self.store.save(record)
            return record

    def _attempt(self, key: str) -> None:
        record = self._begin(key)
        if record is None:
            return
        archive_info = record.status.archive
        assert archive_info is not None  # noqa: S101 - Completed implies an archive
        request = record.request
        target = EvidenceTarget(
            namespace=request.pod_namespace,
            pod=request.pod_name,
            container=request.container,
            capture_key=key,
            node=self.node_name,
            checkpoint_name=request.checkpoint_name,
            checkpoint_uid=request.checkpoint_uid,
        )
        try:
            archive = paths.resolve_archive(archive_info.path, self.checkpoint_dir)
        except CaptureError as exc:
            self._fail(key, ARCHIVE_GONE, f"cannot export: {exc.message}", final=True)
            return
        if record.status.state is CaptureState.ANALYZING:
            self._archive_first(record, archive, target)
            return
        outcome = self._export(record, archive, target)
        if outcome is None:
            return
        with self.store.locked():
            current = self.store.get(key)
            if current is None:
                return  # deleted by the operator meanwhile; the object stays in the store
            before = current.status.export
            finished = current.status.finished_at
            current.status.export = ExportProgress(
                phase=ExportPhase.EXPORTED,
                attempts=before.attempts if before else 1,
                reason="Exported",
                message=_exported_message(current, outcome),
                record=outcome.record,
                archive_ms=before.archive_ms if before else None,
                after_finished_ms=(
                    millis((self._clock() - finished).total_seconds()) if finished else None
                ),
            )
            for fact in custody_facts.from_entries(outcome.custody[-2:], current, self.node_name):
                custody_facts.add(current, fact)
            self.store.save(current)
        self.metrics.exports.labels(outcome="Exported").inc()
        if outcome.uploaded:
            self.metrics.export_bytes.inc(outcome.record.size_bytes)
        log.info(
            "capture %s exported to %s (%d parts sent, %d resumed)",
            key,
            outcome.record.url,
            outcome.parts_uploaded,
            outcome.parts_skipped,
        )

    def _export(
        self, record: JobRecord, archive: Path, target: EvidenceTarget
    ) -> ExportOutcome | None:
        """One export attempt; a failure is recorded (retry or final) and gives ``None``."""
        key = record.status.key
        assert record.status.archive is not None  # noqa: S101 - checked by the caller
        archive_sha256 = record.status.archive.sha256
        report = Path(record.report_path) if record.report_path else None
        if record.status.state is not CaptureState.COMPLETED:
            report = None  # a failed analysis: the archive goes without a report
        report_json = report.read_bytes() if report and report.is_file() else None
        return self._guarded(
            key,
            lambda: self._factory(self.config).export(
                archive,
                archive_sha256,
                target,
                report_json=report_json,
                chain=custody_facts.manifest_chain(record, target.custody_subject),
                archive_verified=record.archive_exported,
            ),
        )

    def _guarded(self, key: str, call: Callable[[], _T]) -> _T | None:
        """``call``'s result; a failure is recorded (retry or final) and gives ``None``."""
        try:
            return call()
        except ExportCancelled as exc:
            self._abandon(key, exc.message)
        except (IntegrityError, ConfigError) as exc:
            self._fail(key, exc.reason, exc.message, final=True)
        except S3RequestError as exc:
            self._fail(key, exc.code or exc.reason, exc.message, final=False)
        except ForensicCheckpointError as exc:
            self._fail(key, exc.reason, exc.message, final=False)
        except OSError as exc:
            self._fail(key, "ExportIOError", str(exc), final=False)
        return None

    def _archive_first(self, record: JobRecord, archive: Path, target: EvidenceTarget) -> None:
        """The archive-only pass of an Analyzing job (see the module docstring)."""
        key = record.status.key
        assert record.status.archive is not None  # noqa: S101 - export_due checked it
        started = time.monotonic()
        exporter = self._factory(self.config)
        sha256 = record.status.archive.sha256
        obj = self._guarded(
            key,
            lambda: exporter.export_archive(
                archive, sha256, target, cancelled=lambda: self._gone(key)
            ),
        )
        if obj is None:
            return
        elapsed = millis(time.monotonic() - started)
        with self.store.locked():
            current = self.store.get(key)
            if current is None or current.status.archive_deleted_at is not None:
                # Deleted as the upload completed (its state and spool are gone already):
                # leave nothing behind in the bucket either.
                exporter.remove(obj.key)
                self._abandon_locked(current, "the capture was deleted during its export")
                return
            current.archive_exported = True
            export = current.status.export or ExportProgress(phase=ExportPhase.PENDING)
            export.phase = ExportPhase.PENDING
            export.reason = "ArchiveExported"
            export.message = (
                f"archive uploaded and read back: sha256 {obj.sha256}; the report and the "
                "manifest follow when the analysis ends"
            )
            export.archive_ms = elapsed
            current.status.export = export
            self.store.save(current)
        if obj.uploaded:
            self.metrics.export_bytes.inc(obj.size)
        log.info("capture %s: archive exported beside its analysis in %d ms", key, elapsed)

    def _gone(self, key: str) -> bool:
        """Whether ``key``'s capture was deleted (asked between the parts of its upload)."""
        record = self.store.get(key)
        return record is None or record.status.archive_deleted_at is not None

    def _abandon(self, key: str, message: str) -> None:
        """Abort ``key``'s upload and drop its spool; its export ends ``Failed``."""
        self._factory(self.config).abandon(key)
        with self.store.locked():
            self._abandon_locked(self.store.get(key), message)

    def _abandon_locked(self, record: JobRecord | None, message: str) -> None:
        """The export of ``record`` (store locked) ends ``Failed``, its upload gone."""
        if record is None or record.status.export is None:
            return
        export = record.status.export
        export.phase, export.reason, export.message = ExportPhase.FAILED, ARCHIVE_GONE, message
        export.next_attempt_at = None
        self.store.save(record)
        self.metrics.exports.labels(outcome=ARCHIVE_GONE).inc()
        log.warning("capture %s: export abandoned: %s", record.status.key, message)

    def retry_delay(self, attempts: int) -> float:
        delay = self.retry_base_seconds * 2.0 ** max(0, attempts - 1)
        return float(min(self.retry_max_seconds, delay))

    def _fail(self, key: str, reason: str, message: str, *, final: bool) -> None:
        with self.store.locked():
            record = self.store.get(key)
            if record is None or record.status.export is None:
                return
            export = record.status.export
            export.reason = reason or "ExportFailed"
            export.message = message[:1024]
            if final:
                export.phase = ExportPhase.FAILED
            else:
                delay = self.retry_delay(export.attempts)
                export.phase = ExportPhase.RETRYING
                export.next_attempt_at = self._clock() + timedelta(seconds=delay)
                export.message = (
                    f"{export.message} (attempt {export.attempts}; next in {delay:g} s)"
                )
            self.store.save(record)
        self.metrics.exports.labels(outcome=reason or "ExportFailed").inc()
        log.warning("capture %s export failed (%s): %s", key, reason, message)


def _exported_message(record: JobRecord, outcome: ExportOutcome) -> str:
    message = f"uploaded and read back: sha256 {outcome.record.sha256}"
    if record.status.state is CaptureState.FAILED:
        message += (
            f"; the analysis failed ({record.status.reason}): the archive is exported as "
            "evidence, without a report"
        )
    return message


def millis(seconds: float) -> int:
    return max(0, round(seconds * 1000))
