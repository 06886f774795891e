"""The analysis of a captured archive: an Analyzing job, run by an analysis worker
(:mod:`.workers`), never by a capture worker; and its stop when the capture is deleted.

``DELETE`` of an Analyzing job (its ForensicCheckpoint was deleted during the analysis) stops
the analysis and waits for it to end: the analysis process is killed, so it neither keeps the
archive open nor writes its report afterwards. Then the archive and the report are deleted, and
the job ends ``Failed``, reason ``DeletedWhileAnalyzing``, with a ``Deleted`` custody fact
(``archiveDeletedAt`` set, as retention does); the record stays as the account, as after a
``DELETE`` in flight (:mod:`.deleted_in_flight`). A held job is refused, as ``DELETE`` of a
finished held job is (``HeldNotExported``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forensic_checkpoint.agent.capture import analysis_retry, job_files, timings
from forensic_checkpoint.agent.capture.analysis_runner import Analyzer, ArchiveToAnalyse
from forensic_checkpoint.agent.evidence import custody_facts
from forensic_checkpoint.agent.jobs import JobRecord, utcnow
from forensic_checkpoint.analysis.format.file_hash import BackgroundHash, HashStopped
from forensic_checkpoint.api.agent import (
    CaptureState,
    DeleteResult,
    ExportPhase,
    ExportProgress,
)
from forensic_checkpoint.errors import ForensicCheckpointError, NotFoundError

if TYPE_CHECKING:
    from forensic_checkpoint.agent.capture.service import CaptureService

log = logging.getLogger(__name__)

#: Reason of the job, and of its Deleted fact, when it was deleted during its analysis.
DELETED_WHILE_ANALYZING = "DeletedWhileAnalyzing"
#: Seconds a DELETE waits for a stopped analysis to end (the process analyzer takes a tenth of
#: a second); an analyzer that ignores the stop has its files deleted from under it.
STOP_WAIT = 10.0


@dataclass
class Running:
    """One analysis under way: ``stop`` asks it to end, ``ended`` says it has."""

    stop: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


class AnalysisStage:
    def __init__(self, service: CaptureService, analyzer: Analyzer) -> None:
        self._service = service
        self._analyze = analyzer
        #: Analyses under way by key (under the store lock). A stopped one stays until its
        #: DELETE has finished, so that no other worker starts the job again meanwhile.
        self._running: dict[str, Running] = {}

    def run(self, key: str) -> None:
        """An analysis worker's part of a job: analyse its archive, finish the job."""
        store = self._service.store
        with store.locked():
            record = store.get(key)
            if (
                record is None
                or record.status.state is not CaptureState.ANALYZING
                or analysis_retry.waiting(record)
                or key in self._running
            ):
                return
            running = self._running[key] = Running()
        try:
            self._analysis(record, running)
        except Exception:
            if not running.stop.is_set():
                raise  # the service fails the job
            log.exception("capture %s: its stopped analysis failed", key)  # its DELETE ends it
        finally:
            with store.locked():
                if not running.stop.is_set():
                    del self._running[key]
            running.ended.set()

    def _analysis(self, record: JobRecord, running: Running) -> None:
        """Hash and analyse the archive side by side (:mod:`..hashing`), then end the job."""
        service = self._service
        key = record.status.key
        path = record.archive_path()
        assert path is not None  # noqa: S101 - ANALYZING implies an archive
        hasher, digest = self._digest(record)
        report = service.store.report_path(key)
        started = time.monotonic()
        failure: ForensicCheckpointError | None = None
        try:
            summary = self._analyze(
                ArchiveToAnalyse(path, digest), report, record.request, running.stop
            )
        except ForensicCheckpointError as exc:
            failure = exc
        finally:
            service.metrics.analysis_seconds.observe(time.monotonic() - started)
        unreadable = _hash_failure(hasher)  # the hash ends before the job does
        with service.store.locked():
            if running.stop.is_set():  # deleted: its DELETE removes the files and ends the job
                current = service.store.get(key)
                if current is None or current.status.state.terminal:
                    report.unlink(missing_ok=True)  # written after that DELETE stopped waiting
                return
            current = service.store.get(key)  # with the archive the hash recorded meanwhile
            if current is None:
                return
            record = current
            timings.analysis_done(record, started, service.metrics)
            if unreadable is not None:
                service.finish(
                    record,
                    reason="ArchiveUnreadable",
                    message=f"cannot read archive {path}: {unreadable}",
                )
                return
            if failure is not None:
                if analysis_retry.keep_for_retry(record, failure, utcnow()):
                    service.store.save(record)  # still Analyzing: the retrier queues it again
                else:
                    service.finish(
                        record, reason=failure.reason, message=f"analysis failed: {failure.message}"
                    )
                return
            record.report_path = str(report)
            record.status.summary = summary
            if service.export_enabled and record.status.export is None:
                # Usually set (and the archive's upload under way) once the hash was recorded.
                record.status.export = ExportProgress(phase=ExportPhase.PENDING)
            service.finish(
                record,
                reason="Completed",
                message="archive captured and analysed",
                state=CaptureState.COMPLETED,
            )

    def _digest(
        self, record: JobRecord
    ) -> tuple[BackgroundHash | None, Callable[[], tuple[str, int]]]:
        """The agent's hash running beside the analysis (started when the archive landed),
        and how the analysis gets its result; an archive hashed already (before a restart, or
        a retried analysis) is not hashed again."""
        known = record.status.archive
        if known is not None:
            return None, lambda: (known.sha256, known.size_bytes)
        hasher = self._service.hash_for(record)
        return hasher, hasher.result

    # --- DELETE of an Analyzing job -------------------------------------------------------

    def stop(self, record: JobRecord) -> Running | None:
        """First half of the DELETE (store locked): refuse a held job, stop its analysis; the
        analysis to wait for, ``None`` when none runs."""
        job_files.refuse_held(record)
        self._service.stop_hash(record.status.key)
        running = self._running.get(record.status.key)
        if running is not None:
            running.stop.set()
        return running

    def delete(self, key: str, running: Running | None) -> DeleteResult:
        """Second half: once the analysis has ended, delete the archive and the report."""
        if running is not None and not running.ended.wait(STOP_WAIT):
            log.warning("capture %s: its analysis did not stop within %g s", key, STOP_WAIT)
        store = self._service.store
        with store.locked():
            if running is not None and self._running.get(key) is running:
                del self._running[key]
            record = store.get(key)
            if record is None:
                raise NotFoundError(f"no capture with key {key}", reason="NotFound")
            if record.status.state is not CaptureState.ANALYZING:
                return DeleteResult(key=key)  # another DELETE of it came first
            if record.status.held:  # a hold set while the analysis stopped: it wins
                self._service.resume(key)
                job_files.refuse_held(record)
            return DeleteResult(key=key, deleted=self.discard(record))

    def discard(self, record: JobRecord) -> list[str]:
        """Delete the archive and the report of an Analyzing job no analysis runs for, and end
        the job (store locked); the host paths deleted."""
        service = self._service
        key = record.status.key
        deleted = job_files.remove(record, service.checkpoint_dir)
        report = service.store.report_path(key)
        if report.exists():
            report.unlink()
            deleted.append(str(report))
        for partial in report.parent.glob(f".{report.name}.*.tmp"):  # a killed report write
            partial.unlink(missing_ok=True)
        now = utcnow()
        message = "the capture was deleted during its analysis; the analysis was stopped"
        record.status.archive_deleted_at = now
        record.status.archive_deleted_reason = DELETED_WHILE_ANALYZING
        custody_facts.add(
            record,
            custody_facts.deleted(record, service.node_name, now, DELETED_WHILE_ANALYZING, message),
        )
        service.finish(
            record, reason=DELETED_WHILE_ANALYZING, message=f"{message}; deleted {deleted}"[:4096]
        )
        log.warning("capture %s deleted during its analysis: %s", key, deleted)
        return deleted


def _hash_failure(hasher: BackgroundHash | None) -> OSError | None:
    """Why the agent could not hash the archive, once its hash has ended (a stopped hash is
    no failure: its DELETE ends the job)."""
    if hasher is None:
        return None
    try:
        hasher.result()
    except HashStopped:
        return None
    except OSError as exc:
        return exc
    return None
