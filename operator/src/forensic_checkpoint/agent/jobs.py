"""Capture jobs on disk (``--state-dir``, a hostPath): the agent's memory across restarts.

One JSON file per capture key, replaced atomically (write, fsync, rename, fsync the directory),
so a crash leaves either the old record or the new one, never half of one. A legal hold is an
empty file ``holds/<key>``, not a field of the record: the hold can change while a worker holds
an older copy of the record in memory, and that worker's next save must not undo it.

The record is written with ``kubelet_called_at`` BEFORE the kubelet call: a restarted agent that
finds a job in ``Capturing`` knows a call may have happened and must not make another.

In memory the store keeps one :class:`JobLine` per job (its digest line, its files, its watch;
about 1 KiB), read once at start and kept current by every save and delete. What runs per
request or per finished capture (a waiting status request, ``GET /v1/captures``, the metrics
scrape, the orphan keeper's watch, an adoption's claimed archives) reads the lines, not every
record file: with months of kept archives a burst costs no more than on an empty node.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from forensic_checkpoint.api.agent import (
    CaptureDigest,
    CaptureRequest,
    CaptureState,
    CaptureStatus,
    digest_of,
)
from forensic_checkpoint.errors import ConfigError

_RECORD_SUFFIX = ".json"


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobRecord(BaseModel):
    """Everything the agent knows about one capture; ``status`` is what the API returns."""

    request: CaptureRequest
    status: CaptureStatus
    #: When the agent (was about to) call the kubelet; ``None`` means it never did.
    kubelet_called_at: datetime | None = None
    #: Host path of the report JSON, once the analysis finished.
    report_path: str | None = None
    #: Analysis attempts that failed for want of space, and when the last one did (set while
    #: the job waits for :mod:`.capture.analysis_retry`).
    analysis_failures: int = 0
    analysis_failed_at: datetime | None = None
    #: When a DELETE arrived while the capture was in flight (the CR was deleted mid-capture):
    #: an archive the call still writes is deleted on landing (:mod:`.capture.deleted_in_flight`).
    deleted_while_capturing_at: datetime | None = None
    #: When the agent accepted the job (the start of ``status.timings.queued_ms``).
    accepted_at: datetime | None = None
    #: Host path of the archive the kubelet wrote, from its landing on: ``status.archive``
    #: (with its sha256) follows once the agent's hash, run beside the analysis, is done.
    landed_archive: str | None = None
    #: The export worker uploaded the archive and read it back while the analysis ran; the
    #: export after the job's end adds the report and manifest without reading it again.
    archive_exported: bool = False

    def archive_path(self) -> str | None:
        """The job's archive on the node, hashed or not yet."""
        return self.status.archive.path if self.status.archive else self.landed_archive


@dataclass(frozen=True, slots=True)
class JobLine:
    """What the store keeps in memory of one job (see the module docstring)."""

    digest: CaptureDigest
    #: The archive (hashed or only landed) and the report on the node, if any.
    archive: str | None
    report: str | None
    #: The job watches for a late archive until then (:mod:`.capture.orphans`).
    late_archive_watch_until: datetime | None

    @classmethod
    def of(cls, record: JobRecord) -> JobLine:
        return cls(
            digest_of(record.status),
            record.archive_path(),
            record.report_path,
            record.status.late_archive_watch_until,
        )


class JobStore:
    """Thread-safe store of :class:`JobRecord` files under ``<state_dir>/jobs``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.jobs_dir = state_dir / "jobs"
        self.reports_dir = state_dir / "reports"
        self.holds_dir = state_dir / "holds"
        for directory in (self.jobs_dir, self.reports_dir, self.holds_dir):
            try:
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise ConfigError(f"cannot create state directory {directory}: {exc}") from exc
        self._lock = threading.RLock()
        #: Notified on every change of a record: wakes the operator's waiting status requests.
        self._changed = threading.Condition(self._lock)
        self._lines = {record.status.key: JobLine.of(record) for record in self.all()}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store lock across a read-modify-write of one or more records."""
        with self._lock:
            yield

    def _path(self, key: str) -> Path:
        # Keys are validated by CaptureKey (DNS-label characters), so they are safe file names.
        return self.jobs_dir / f"{key}{_RECORD_SUFFIX}"

    def report_path(self, key: str) -> Path:
        return self.reports_dir / f"{key}.json"

    def get(self, key: str) -> JobRecord | None:
        with self._lock:
            path = self._path(key)
            try:
                return self._with_hold(JobRecord.model_validate_json(path.read_bytes()))
            except FileNotFoundError:
                return None

    def _with_hold(self, record: JobRecord) -> JobRecord:
        record.status.held = (self.holds_dir / record.status.key).exists()
        return record

    def set_hold(self, key: str, hold: bool) -> None:
        with self._lock:
            marker = self.holds_dir / key
            if hold:
                marker.touch(mode=0o600)
            else:
                marker.unlink(missing_ok=True)
            _fsync_dir(self.holds_dir)

    def save(self, record: JobRecord) -> None:
        with self._lock:
            _atomic_write(self._path(record.status.key), record.model_dump_json().encode())
            self._lines[record.status.key] = JobLine.of(record)
            self._changed.notify_all()

    def wait_while(self, key: str, states: Collection[CaptureState], timeout: float) -> None:
        """Until job ``key`` is in none of ``states`` (or gone) or has a new custody fact, at
        most ``timeout`` seconds: the operator learns that a kubelet call ended, that the
        archive's sha256 is recorded (the Captured fact) or that the analysis ended when it
        happens, not at its next poll."""
        deadline = time.monotonic() + timeout
        with self._changed:
            first = self._lines.get(key)
            facts = first.digest.custody_events if first is not None else 0
            while True:
                line = self._lines.get(key)  # every save wakes every waiter: no file read here
                left = deadline - time.monotonic()
                if line is None or line.digest.state not in states or left <= 0:
                    return
                if line.digest.custody_events != facts:
                    return
                self._changed.wait(left)

    def create_if_absent(self, request: CaptureRequest) -> tuple[JobRecord, bool]:
        """The existing job for ``request.key``, or a new Queued one (``True`` = created)."""
        with self._lock:
            existing = self.get(request.key)
            if existing is not None:
                return existing, False
            record = JobRecord(
                request=request,
                status=CaptureStatus(key=request.key, state=CaptureState.QUEUED, held=request.hold),
                accepted_at=utcnow(),
            )
            if request.hold:
                self.set_hold(request.key, True)
            self.save(record)
            return record, True

    def delete(self, key: str) -> None:
        with self._lock:
            self._changed.notify_all()
            self._path(key).unlink(missing_ok=True)
            self._lines.pop(key, None)
            _fsync_dir(self.jobs_dir)
            (self.holds_dir / key).unlink(missing_ok=True)

    def lines(self) -> dict[str, JobLine]:
        """Every job's line, by key (a copy of the dict; the lines are immutable)."""
        with self._lock:
            return dict(sorted(self._lines.items()))

    def all(self) -> list[JobRecord]:
        """Every readable record; unreadable ones are skipped (they are reported by ``broken``)."""
        records: list[JobRecord] = []
        with self._lock:
            for path in sorted(self.jobs_dir.glob(f"*{_RECORD_SUFFIX}")):
                try:
                    records.append(
                        self._with_hold(JobRecord.model_validate_json(path.read_bytes()))
                    )
                except (OSError, ValidationError):
                    continue
        return records

    def broken(self) -> list[Path]:
        """Record files that no longer parse (kept on disk for a human; never deleted)."""
        bad: list[Path] = []
        for path in sorted(self.jobs_dir.glob(f"*{_RECORD_SUFFIX}")):
            try:
                JobRecord.model_validate_json(path.read_bytes())
            except (OSError, ValidationError):
                bad.append(path)
        return bad


def _atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, atomically (reports hold memory excerpts)."""
    _atomic_write(path, data, 0o600)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
