"""Capture jobs: queue, kubelet call, hash, analysis, and recovery after a restart.

Invariants:

- exactly one kubelet call per capture key, ever, and no archive left on the node unaccounted
  for: see :mod:`.kubelet_stage` (the call, or the adoption of a job a restart cut);
- nothing the kubelet wrote is deleted except by :meth:`CaptureService.delete` and retention
  (:mod:`.evidence.retention_keeper`), and neither deletes a held archive that
  exists nowhere else;
- every custody fact (Captured here; Exported, Verified and Deleted elsewhere) is appended to
  the job record and saved with the state change it describes;
- archives and reports are 0600.

A Completed job's status carries the analysis summary (:mod:`.summary`). Beside this module:
:mod:`.workers` (the capture and analysis pools, fair across namespaces, and
:mod:`.call_spacing`, one job per container at a time), :mod:`.kubelet_stage` (the kubelet
call, refused by :mod:`.disk_floor` when the node's disk is too full, or the :mod:`.adoption`
of a job a restart left in Capturing), :mod:`.analysis_stage` (the analysis, and its stop by a
DELETE), :mod:`.job_files` (a job's archive and report on disk), :mod:`.analysis_retry` (an
analysis that failed for want of space), :mod:`.deleted_in_flight` (a capture deleted while its
kubelet call ran). Over 400 lines: the jobs' public API, their recovery at start, and what both
stages share (the hash record and the job's end, under the store lock) are kept in one place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from forensic_checkpoint.agent.capture import analysis_retry, job_files, timings
from forensic_checkpoint.agent.capture.adoption import DEFAULT_RESTART_ADOPT_WINDOW
from forensic_checkpoint.agent.capture.analysis_runner import Analyzer
from forensic_checkpoint.agent.capture.analysis_stage import AnalysisStage
from forensic_checkpoint.agent.capture.disk_floor import (
    DiskFloor,
    FloorGate,
    FreeSpace,
    statvfs_space,
)
from forensic_checkpoint.agent.capture.kubelet_stage import KubeletStage
from forensic_checkpoint.agent.capture.workers import Job, Workers
from forensic_checkpoint.agent.evidence import custody_facts
from forensic_checkpoint.agent.jobs import JobRecord, JobStore, utcnow
from forensic_checkpoint.agent.kubelet.client import DEFAULT_RUNTIME_REQUEST_TIMEOUT
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.analysis.format.file_hash import BackgroundHash
from forensic_checkpoint.api.agent import (
    ArchiveInfo,
    CaptureDigests,
    CaptureRequest,
    CaptureState,
    CaptureStatus,
    DeleteResult,
    ExportPhase,
    ExportProgress,
)
from forensic_checkpoint.errors import AgentQueueFull, NotFoundError

log = logging.getLogger(__name__)

#: Seconds a job watches for a late archive after the agent gave up on its kubelet call.
DEFAULT_LATE_ARCHIVE_WINDOW = 60.0
#: The longest a status request waits for its job to change (``waitWhile``): an HTTP thread
#: each, bounded by the operator's captures in flight on this node.
MAX_STATUS_WAIT = 30.0
#: Status requests waiting at once, at most: each holds one of the server's 64 connections and
#: one of the operator's 32 to this node, and 64 captures in flight on one node (capturing or
#: analysing) would otherwise take them all (the operator's sweep and new requests then waited,
#: or found the agent closing connections at accept). Past it a waiting request is answered at
#: once, and the operator asks again at its poll interval.
MAX_STATUS_WAITERS = 16
#: Jobs waiting for a worker at most (``--max-queued-captures``): the agent's memory and its
#: disk of job records stay bounded in a burst; a new capture past it is refused with 503
#: ``AgentQueueFull`` before anything is recorded, and the operator asks again.
DEFAULT_MAX_QUEUED = 128


class Checkpointer(Protocol):
    def checkpoint(
        self, namespace: str, pod: str, container: str, timeout_seconds: int | None
    ) -> str: ...


class CaptureService:
    """Owns the job store and the worker pools; the HTTP layer only calls its public methods."""

    def __init__(
        self,
        *,
        node_name: str,
        store: JobStore,
        kubelet: Callable[[], Checkpointer],
        analyzer: Analyzer,
        checkpoint_dir: Path,
        metrics: AgentMetrics | None = None,
        capture_workers: int = 4,
        analysis_workers: int = 2,
        kubelet_timeout_margin: float = 30.0,
        kubelet_runtime_request_timeout: float = DEFAULT_RUNTIME_REQUEST_TIMEOUT,
        restart_adopt_window: float = DEFAULT_RESTART_ADOPT_WINDOW,
        late_archive_window: float = DEFAULT_LATE_ARCHIVE_WINDOW,
        poll_interval: float = 1.0,
        export_enabled: bool = False,
        disk_floor: DiskFloor | None = None,
        free_space: FreeSpace = statvfs_space,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_waiters: int = MAX_STATUS_WAITERS,
    ) -> None:
        self.node_name = node_name
        self.store = store
        self.checkpoint_dir = checkpoint_dir
        self.metrics = metrics or AgentMetrics()
        self.metrics.watch_storage(self.storage)
        self.kubelet_timeout_margin = kubelet_timeout_margin
        self.kubelet_runtime_request_timeout = kubelet_runtime_request_timeout
        self.restart_adopt_window = restart_adopt_window
        self.late_archive_window = late_archive_window
        self.poll_interval = poll_interval
        #: A hashed archive gets ``export.phase: Pending`` for the export worker.
        self.export_enabled = export_enabled
        self.max_queued = max_queued
        self._waiters = threading.BoundedSemaphore(max_waiters)
        #: Called (without arguments, must not block) whenever a job reaches a final state:
        #: the runtime wakes the export worker and the retention keeper here.
        self.on_finished: list[Callable[[], None]] = []
        #: Called (likewise) when an archive's sha256 is recorded: the export worker starts
        #: the archive's upload then, beside the analysis.
        self.on_hashed: list[Callable[[], None]] = []
        self._stopping = threading.Event()
        self._analyses = AnalysisStage(self, analyzer)
        self._workers = Workers(
            captures=capture_workers,
            analyses=analysis_workers,
            capture=self._capture_stage,
            analyse=self._analysis_stage,
            metrics=self.metrics,
            stopping=self._stopping,
        )
        #: Captures are refused before the kubelet call when free space is below this floor.
        self.disk_floor = disk_floor or DiskFloor()
        self._floor = FloorGate(self.disk_floor, (checkpoint_dir, store.state_dir), free_space)
        self._kubelet_stage = KubeletStage(self, kubelet, self._floor, self._stopping)
        #: The hash of each landed archive not yet recorded, and how to stop it (store lock).
        self._hashes: dict[str, tuple[BackgroundHash, threading.Event]] = {}

    # --- public API -------------------------------------------------------------------------

    def start(self) -> None:
        """Resume every unfinished job found on disk."""
        for bad in self.store.broken():
            log.error("unreadable job record %s left in place", bad)
        # A cut call's adoption before a new call of its container: the new archive is not its.
        records = self.store.all()
        records.sort(key=lambda record: record.status.state is not CaptureState.CAPTURING)
        for record in records:
            if record.status.archive is not None:
                self._floor.observe(record.status.archive.size_bytes)
            if record.status.state is CaptureState.CAPTURING:
                log.warning(
                    "job %s was capturing when the agent stopped: looking for its archive",
                    record.status.key,
                )
            if not record.status.state.terminal and not analysis_retry.waiting(record):
                self._enqueue(record)

    def submit(self, request: CaptureRequest) -> tuple[CaptureStatus, bool]:
        """The job for ``request.key``: existing (``False``) or newly queued (``True``);
        raises :class:`AgentQueueFull` for a new one while ``max_queued`` jobs wait."""
        with self.store.locked():
            if self.store.get(request.key) is None and self._workers.full(
                request.pod_namespace, self.max_queued
            ):
                self.metrics.queue_refusals.inc()
                raise AgentQueueFull(
                    f"{self.queue_depth()} captures wait for a worker on {self.node_name}, the "
                    f"limit (--max-queued-captures={self.max_queued}, and a quarter more for "
                    "namespaces with none waiting): ask again later"
                )
            record, created = self.store.create_if_absent(request)
            if created:  # queued under the lock: the depth checked above includes it
                self._enqueue(record)
        if created:
            log.info(
                "capture %s queued for %s/%s/%s",
                request.key,
                request.pod_namespace,
                request.pod_name,
                request.container,
            )
        return record.status, created

    def resume(self, key: str) -> None:
        """Queue an unfinished job again (how :mod:`.analysis_retry` retries an analysis)."""
        record = self.store.get(key)
        if record is not None and not record.status.state.terminal:
            self._enqueue(record)

    def status(
        self, key: str, *, wait_while: Collection[CaptureState] = (), timeout: float = 0.0
    ) -> CaptureStatus:
        """The job's status; with ``wait_while``, once it has left those states (or after
        ``timeout`` seconds, at most :data:`MAX_STATUS_WAIT`; at once while
        :data:`MAX_STATUS_WAITERS` requests wait already)."""
        if wait_while and self._waiters.acquire(blocking=False):
            try:
                self._get(key)
                self.store.wait_while(key, wait_while, min(timeout, MAX_STATUS_WAIT))
            finally:
                self._waiters.release()
        return self._get(key).status

    def digests(self) -> CaptureDigests:
        """One line per job on this node (``GET /v1/captures``): the operator's one call per
        agent to follow every kept archive."""
        lines = self.store.lines().values()  # in memory: no record file is read
        return CaptureDigests(node_name=self.node_name, items=[line.digest for line in lines])

    def report_file(self, key: str) -> Path:
        return job_files.report_file(self._get(key))

    def archive_file(self, key: str) -> tuple[Path, ArchiveInfo]:
        return job_files.archive_file(self._get(key), self.checkpoint_dir)

    def set_hold(self, key: str, hold: bool) -> CaptureStatus:
        """Set or lift the legal hold (the CR's ``forensic-checkpoint.dev/hold``)."""
        with self.store.locked():
            self._get(key)
            self.store.set_hold(key, hold)
            log.info("capture %s: legal hold %s", key, "set" if hold else "lifted")
            status = self._get(key).status
        for hook in self.on_finished:
            hook()  # a lifted hold may let retention delete now
        return status

    def delete(self, key: str) -> DeleteResult:
        """Remove the archive and the report, then the job. Refused while its export runs, and
        for a held archive not exported yet (``on_checkpoint_deleted``). A job in flight is
        marked (:mod:`.deleted_in_flight`); an Analyzing one is stopped (:mod:`.analysis_stage`)."""
        with self.store.locked():
            record = self._get(key)
            if record.status.state in (CaptureState.QUEUED, CaptureState.CAPTURING):
                return self._delete_in_flight(record)
            if record.status.state is CaptureState.ANALYZING:
                running = self._analyses.stop(record)
                if running is None:
                    return DeleteResult(key=key, deleted=self._analyses.discard(record))
            else:
                job_files.check_deletable(record)
                deleted = job_files.remove(record, self.checkpoint_dir)
                self.store.delete(key)
                log.info("capture %s deleted: %s", key, deleted)
                return DeleteResult(key=key, deleted=deleted)
        return self._analyses.delete(key, running)  # once the analysis has ended

    def _delete_in_flight(self, record: JobRecord) -> DeleteResult:
        """Cancel + mark + watch (:mod:`.deleted_in_flight`): a queued job never calls the
        kubelet; a capturing one deletes what its call writes, when it lands."""
        key = record.status.key
        if record.deleted_while_capturing_at is None:
            record.deleted_while_capturing_at = utcnow()
            self.store.save(record)
        log.warning(
            "capture %s deleted while %s: its archive is deleted when it lands",
            key,
            record.status.state,
        )
        return DeleteResult(key=key, deleted=[], pending=True)

    def storage(self) -> tuple[dict[str, int], int]:
        """Jobs by state, and bytes of the archives and reports still on disk."""
        return job_files.storage(self.store.lines().values())

    def queue_depth(self) -> int:
        return self._workers.queue_depth()

    def in_progress(self) -> int:
        return self._workers.in_progress()

    def shutdown(self, wait: bool = False) -> None:
        self._stopping.set()
        self._workers.shutdown(wait=wait)

    # --- the job ----------------------------------------------------------------------------

    def _get(self, key: str) -> JobRecord:
        record = self.store.get(key)
        if record is None:
            raise NotFoundError(f"no capture with key {key}", reason="NotFound")
        return record

    def _enqueue(self, record: JobRecord) -> None:
        job = Job.of(record.request)
        if record.status.state is CaptureState.ANALYZING:
            self._workers.analyse(job)
        else:
            self._workers.capture(job)

    def _capture_stage(self, job: Job) -> bool:
        """A capture worker's part of a job, its container held (:mod:`.call_spacing`): the
        kubelet call, or the adoption after a restart, and the hash; whether it is Analyzing."""
        record: JobRecord | None = None
        try:
            record = self.store.get(job.key)
            if record is None or record.status.state.terminal:
                return False
            if record.status.state is CaptureState.QUEUED:
                record = self._kubelet_stage.capture(record)
            elif record.status.state is CaptureState.CAPTURING:
                record = self._kubelet_stage.adopt(record)
        except Exception:
            self._unexpected(job.key)
            return False
        return record is not None and record.status.state is CaptureState.ANALYZING

    def _analysis_stage(self, job: Job) -> None:
        try:
            self._analyses.run(job.key)
        except Exception:
            self._unexpected(job.key)

    def _unexpected(self, key: str) -> None:
        log.exception("capture %s: unexpected error", key)
        record = self.store.get(key)
        if record is not None and not record.status.state.terminal:
            self.finish(record, reason="AgentError", message="unexpected agent error; see log")

    def hash_for(self, record: JobRecord) -> BackgroundHash:
        """The agent's hash of ``record``'s landed archive, started now unless it runs already
        (after a restart, the analysis starts it again)."""
        key = record.status.key
        with self.store.locked():
            running = self._hashes.get(key)
            if running is not None:
                return running[0]
            path = Path(record.landed_archive or "")
            stop, started = threading.Event(), time.monotonic()
            hasher = BackgroundHash(
                path, stop=stop, on_done=lambda hashed: self.record_hash(key, path, hashed, started)
            )
            self._hashes[key] = (hasher, stop)
            return hasher

    def stop_hash(self, key: str) -> None:
        """Stop and forget ``key``'s hash (its job ended, or its archive is being deleted)."""
        with self.store.locked():
            running = self._hashes.pop(key, None)
        if running is not None:
            running[1].set()

    def record_hash(self, key: str, archive: Path, hashed: tuple[str, int], started: float) -> None:
        """The agent's sha256 of ``key``'s landed archive is done (``started``: its
        ``time.monotonic()``): the archive and its Captured fact go into the job's status, while
        the analysis may still run."""
        digest, size = hashed
        captured_at = datetime.fromtimestamp(archive.stat().st_mtime, UTC)
        self.metrics.archive_bytes.inc(size)
        self.metrics.archive_size.observe(size)
        self._floor.observe(size)
        with self.store.locked():
            record = self.store.get(key)
            if record is None or record.status.state.terminal or record.status.archive:
                return  # deleted meanwhile, or recorded before a restart
            timings.hash_done(record, started, self.metrics)
            record.status.archive = ArchiveInfo(
                path=str(archive), sha256=digest, size_bytes=size, captured_at=captured_at
            )
            custody_facts.add(
                record,
                custody_facts.captured(
                    record,
                    self.node_name,
                    utcnow(),
                    record.status.kubelet_status_code,
                    str(archive),
                ),
            )
            if self.export_enabled and record.status.export is None:
                record.status.export = ExportProgress(phase=ExportPhase.PENDING)
            self.store.save(record)
        log.info("capture %s: archive %s sha256 %s (%d bytes)", key, archive, digest, size)
        for hook in self.on_hashed:
            hook()

    def finish(
        self,
        record: JobRecord,
        *,
        reason: str,
        message: str,
        remediation: str | None = None,
        kubelet_status_code: int | None = None,
        state: CaptureState = CaptureState.FAILED,
    ) -> JobRecord:
        """End the job: its final state and reason, saved, counted, and the hooks woken."""
        record.status.state = state
        record.status.reason = reason
        record.status.message = message
        record.status.remediation = remediation
        if kubelet_status_code is not None:
            record.status.kubelet_status_code = kubelet_status_code
        record.status.finished_at = utcnow()
        self.store.save(record)
        self.stop_hash(record.status.key)  # done by now, unless the job failed without it
        self.metrics.captures.labels(outcome=reason).inc()
        for hook in self.on_finished:
            hook()
        return record
