"""Archives in the checkpoint directory that no capture job claims ("orphans").

The kubelet runs a checkpoint on the HTTP request's context: when the agent stops waiting
(``Timeout``) or the connection breaks, the dump is cancelled, unless the runtime had already
written the archive: a ``checkpoint-<pod>_<ns>-<container>-<RFC3339>.tar`` no job claims, a whole
memory unencrypted outside the chain of custody (a human calling the kubelet does that too).

:class:`OrphanKeeper` is one background thread with two passes:

- the *watch*: a job whose call was abandoned has ``lateArchiveWatchUntil``; until then its
  container's new archives are checked every ``poll_interval`` seconds;
- the *sweep*, at start and then every ``interval`` seconds (0: at start only): any
  kubelet-named archive no job claims, unchanged for ``grace`` seconds.

Both hand a found archive to the policy (``--orphan-archives``):

- ``adopt`` (default): chmod 0600, sha256, and account for it. An archive written since the
  abandoned call of a job for that container (the newest such job) is attached to that job,
  which stays Failed but gets ``archive``, ``orphanArchive: true`` and a ``Captured`` custody
  fact with reason ``OrphanArchive``. Any other becomes a job of its own (key ``orphan-...``,
  Failed with reason ``OrphanArchive``). Either way retention and ``DELETE`` apply to it.
- ``delete``: sha256, then delete; a job the archive belongs to gets a ``Deleted`` fact with
  that hash.

An archive of a container whose capture is in flight is never touched: it may be that capture's.
The late archive of a capture deleted while in flight (:mod:`.deleted_in_flight`) is deleted
whatever the policy, or kept if that job is held.

Over 400 lines: the watch, the sweep and what each policy does to a found archive are one
decision about the same files, under one lock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from forensic_checkpoint.agent import paths
from forensic_checkpoint.agent.background import BackgroundPass
from forensic_checkpoint.agent.capture import deleted_in_flight, job_files
from forensic_checkpoint.agent.capture.service import CaptureService
from forensic_checkpoint.agent.evidence import custody_facts
from forensic_checkpoint.agent.jobs import JobRecord, utcnow
from forensic_checkpoint.analysis.format.file_hash import sha256_file
from forensic_checkpoint.api.agent import (
    ArchiveInfo,
    CaptureRequest,
    CaptureState,
    CaptureStatus,
)
from forensic_checkpoint.api.custody import CustodyAction
from forensic_checkpoint.errors import CaptureError, ConfigError

log = logging.getLogger(__name__)

#: Reason of an orphan's Captured fact, and of a job made for an orphan no job claims.
ORPHAN_ARCHIVE = "OrphanArchive"
#: Reason of the Deleted fact of an orphan removed under ``--orphan-archives=delete``.
ORPHAN_ARCHIVE_DELETED = "OrphanArchiveDeleted"
DEFAULT_GRACE = 120.0


class OrphanPolicy(StrEnum):
    ADOPT = "adopt"
    DELETE = "delete"

    @classmethod
    def parse(cls, value: str) -> OrphanPolicy:
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"--orphan-archives must be adopt or delete, not {value!r}") from None


def _target(record: JobRecord) -> tuple[str, str, str]:
    request = record.request
    return request.pod_name, request.pod_namespace, request.container


def _matches(record: JobRecord, name: str) -> bool:
    return paths.archive_name_pattern(*_target(record)).match(name) is not None


def _gave_up(record: JobRecord) -> bool:
    """A finished job that called the kubelet and got no answer: its dump may have landed."""
    status = record.status
    return (
        status.state is CaptureState.FAILED
        and record.archive_path() is None
        and status.kubelet_status_code is None
        and record.kubelet_called_at is not None
    )


class OrphanKeeper(BackgroundPass):
    name = "orphans"

    def __init__(
        self,
        *,
        service: CaptureService,
        policy: OrphanPolicy = OrphanPolicy.ADOPT,
        grace: float = DEFAULT_GRACE,
        interval: float = 300.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.service = service
        self.store = service.store
        self.policy = policy
        self.grace = grace
        self.interval = interval
        self._clock = clock
        #: Called after an orphan was adopted or deleted (the runtime wakes retention here).
        self.on_change: list[Callable[[], None]] = []
        self._next_sweep: float | None = 0.0
        self._watching = False
        self._pass = threading.Lock()
        super().__init__()

    def run_pass(self) -> None:
        self._watching = bool(self.watch_once())
        # The first pass sweeps (archives left while no agent ran); then every ``interval``.
        if self._next_sweep is not None and time.monotonic() >= self._next_sweep:
            self.sweep_once()
            self._next_sweep = time.monotonic() + self.interval if self.interval > 0 else None

    def wait_seconds(self) -> float | None:
        if self._watching:
            return self.service.poll_interval
        if self._next_sweep is not None:
            return max(0.0, self._next_sweep - time.monotonic())
        return None

    # --- the two passes ------------------------------------------------------------------

    def watch_once(self) -> list[str]:
        """Look for the late archive of every job still watching; the keys still watching."""
        with self._pass:
            now = self._clock()
            lines = self.store.lines().values()
            if not any(_watches(line.late_archive_watch_until, now) for line in lines):
                return []  # the usual case, after every finished capture: no file read
            records = self.store.all()
            watching: list[str] = []
            for record in records:
                until = record.status.late_archive_watch_until
                if until is None or until < now or not _gave_up(record):
                    continue
                watching.append(record.status.key)
                assert record.kubelet_called_at is not None  # noqa: S101 - _gave_up checked it
                found = job_files.unclaimed_archive(
                    self.store, self.service.checkpoint_dir, record, record.kubelet_called_at
                )
                if found is None or self._in_flight(records, found.name, record.status.key):
                    continue
                if job_files.is_stable(found, self.service.poll_interval):
                    self._handle(found, record.status.key)
                    watching.remove(record.status.key)
            return watching

    def sweep_once(self) -> list[Path]:
        """Handle every kubelet archive no job claims that has not changed for ``grace``
        seconds; the archives handled."""
        with self._pass:
            records = self.store.all()
            claimed = {r.archive_path() for r in records if r.archive_path() is not None}
            handled: list[Path] = []
            for path in self._archives():
                if str(path) in claimed or self._in_flight(records, path.name, None):
                    continue
                try:
                    changed = path.stat().st_mtime
                except FileNotFoundError:
                    continue
                if time.time() - changed < self.grace:
                    continue  # may still be written, or about to be claimed by its caller
                owner = self._owner(records, path)
                if self._handle(path, owner.status.key if owner else None):
                    handled.append(path)
            return handled

    # --- helpers -------------------------------------------------------------------------

    def _archives(self) -> list[Path]:
        root = Path(os.path.realpath(self.service.checkpoint_dir))
        try:
            entries = list(os.scandir(root))
        except FileNotFoundError:
            return []
        return sorted(
            Path(e.path)
            for e in entries
            if paths.ANY_ARCHIVE.match(e.name) and e.is_file(follow_symlinks=False)
        )

    @staticmethod
    def _in_flight(records: list[JobRecord], name: str, other_than: str | None) -> bool:
        """Whether a capture of this archive's container is under way: the file may be its."""
        return any(
            r.status.state in (CaptureState.QUEUED, CaptureState.CAPTURING)
            and r.status.key != other_than
            and _matches(r, name)
            for r in records
        )

    @staticmethod
    def _owner(records: list[JobRecord], path: Path) -> JobRecord | None:
        """The job whose abandoned call wrote ``path``: the newest one of that container that
        called the kubelet at or before the archive's time (to the second)."""
        best: JobRecord | None = None
        for record in records:
            if not _gave_up(record):
                continue
            written = paths.archive_time(path.name, paths.archive_name_pattern(*_target(record)))
            called = record.kubelet_called_at
            if written is None or called is None or written < called.replace(microsecond=0):
                continue
            if best is None or (best.kubelet_called_at or called) < called:
                best = record
        return best

    def _handle(self, path: Path, owner_key: str | None) -> bool:
        """Apply the policy to one orphan; whether it was handled (``False``: it changed or was
        claimed meanwhile, and the next pass decides)."""
        try:
            real = paths.resolve_archive(path, self.service.checkpoint_dir)
            if self.policy is OrphanPolicy.ADOPT:
                real.chmod(0o600)
            before = real.stat()
            digest, size = sha256_file(real)  # outside the store lock: this may take seconds
        except (CaptureError, OSError) as exc:
            log.warning("orphan archive %s: cannot read it: %s", path, exc)
            return False
        now = self._clock()
        with self.store.locked():
            try:
                after = real.stat()
            except FileNotFoundError:
                return False
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                return False
            records = self.store.all()
            if any(r.archive_path() == str(real) for r in records):
                return False
            owner = self.store.get(owner_key) if owner_key else None
            if owner is not None and not _gave_up(owner):
                return False  # its state changed since: decide again on the next pass
            captured_at = datetime.fromtimestamp(after.st_mtime, UTC)
            action, owner = self._apply(owner, real, (digest, size), captured_at, now)
        if owner is not None and owner.deleted_while_capturing_at is not None:
            deleted_in_flight.report(self.service.metrics, owner, real, action)
        else:
            self._report(real, digest, size, action, owner)
        for hook in self.on_change:
            hook()
        return True

    def _report(
        self, real: Path, digest: str, size: int, action: str, owner: JobRecord | None
    ) -> None:
        self.service.metrics.orphan_archives.labels(action=action).inc()
        log.warning(
            "orphan archive %s (%d bytes, sha256 %s) %s%s under --orphan-archives=%s",
            real,
            size,
            digest,
            action,
            f" to capture {owner.status.key}" if owner is not None else "",
            self.policy.value,
        )

    def _apply(
        self,
        owner: JobRecord | None,
        real: Path,
        hashed: tuple[str, int],
        captured_at: datetime,
        now: datetime,
    ) -> tuple[str, JobRecord | None]:
        """Delete, attach or adopt one orphan (store locked); what was done, and to which job."""
        digest, size = hashed
        if owner is not None and owner.deleted_while_capturing_at is not None:
            # Its capture was deleted mid-call: delete, or keep if held, whatever the policy.
            return self._landed_after_delete(owner, real, hashed, captured_at, now), owner
        if self.policy is OrphanPolicy.DELETE:
            real.unlink(missing_ok=True)
            if owner is not None:
                self._record_deleted(owner, real, digest, size, now)
            return "deleted", owner
        if owner is not None:
            self._attach(owner, real, digest, size, captured_at=captured_at, now=now)
            return "attached", owner
        return "adopted", self._adopt_alone(real, digest, size, captured_at, now)

    def _landed_after_delete(
        self,
        owner: JobRecord,
        real: Path,
        hashed: tuple[str, int],
        captured_at: datetime,
        now: datetime,
    ) -> str:
        """The late archive of a capture deleted while in flight (store locked); what was done."""
        if deleted_in_flight.discards(owner):
            deleted_in_flight.discard(owner, real, self.service.node_name, now, hashed)
            self.store.save(owner)
            return "deleted"
        real.chmod(0o600)  # held: kept as evidence, accounted for like an adopted orphan
        self._attach(owner, real, *hashed, captured_at=captured_at, now=now)
        return "kept"

    def _attach(
        self,
        record: JobRecord,
        archive: Path,
        digest: str,
        size: int,
        *,
        captured_at: datetime,
        now: datetime,
    ) -> None:
        status = record.status
        late = ""
        if record.kubelet_called_at is not None and status.finished_at is not None:
            seconds = (captured_at - status.finished_at).total_seconds()
            if seconds >= 0:
                late = f" {seconds:.1f} s after the capture failed"
        note = (
            f"the kubelet wrote {archive}{late}: the archive is kept (0600, sha256 {digest}) "
            "and subject to retention, not analysed"
        )
        status.archive = ArchiveInfo(
            path=str(archive), sha256=digest, size_bytes=size, captured_at=captured_at
        )
        status.orphan_archive = True
        self._record(
            record,
            note,
            action=CustodyAction.CAPTURED,
            reason=ORPHAN_ARCHIVE,
            archive=(digest, size),
            now=now,
            custody_message=f"{archive} written after the agent gave up on the kubelet call",
        )

    def _record_deleted(
        self, record: JobRecord, archive: Path, digest: str, size: int, now: datetime
    ) -> None:
        self._record(
            record,
            f"the kubelet wrote {archive} after the capture failed; deleted by policy",
            action=CustodyAction.DELETED,
            reason=ORPHAN_ARCHIVE_DELETED,
            archive=(digest, size),
            now=now,
            custody_message=f"{archive} written after the agent gave up; --orphan-archives=delete",
        )

    def _record(
        self,
        record: JobRecord,
        note: str,
        *,
        action: CustodyAction,
        reason: str,
        archive: tuple[str, int],
        now: datetime,
        custody_message: str,
    ) -> None:
        """Say what happened to the archive (sha256, size) in the job's message and custody."""
        record.status.message = f"{record.status.message or ''}; {note}".lstrip("; ")[:4096]
        digest, size = archive
        custody_facts.add(
            record,
            custody_facts.orphan(
                record,
                self.service.node_name,
                now,
                action,
                reason=reason,
                sha256=digest,
                size_bytes=size,
                message=custody_message,
            ),
        )
        self.store.save(record)

    def _adopt_alone(
        self, archive: Path, digest: str, size: int, captured_at: datetime, now: datetime
    ) -> JobRecord:
        """A job of its own for an archive no capture of this agent caused."""
        match = paths.ANY_ARCHIVE.match(archive.name)
        assert match is not None  # noqa: S101 - only such names are swept
        namespace, _, container = match["rest"].partition("-")
        key = "orphan-" + hashlib.sha256(archive.name.encode()).hexdigest()[:24]
        if self.store.get(key) is not None:  # the same name again (an older one was deleted)
            key = f"{key}-{digest[:12]}"
        request = CaptureRequest(
            key=key,
            checkpoint_uid=key,
            checkpoint_namespace=namespace,
            checkpoint_name=key,
            pod_namespace=namespace,
            pod_name=match["pod"],
            container=container or match["rest"],
        )
        record = JobRecord(
            request=request,
            status=CaptureStatus(
                key=key,
                state=CaptureState.FAILED,
                reason=ORPHAN_ARCHIVE,
                message=(
                    f"{archive} is in the checkpoint directory, but no capture of this agent "
                    "wrote it (pod, namespace and container are read from its name). It is "
                    "kept (0600) and hashed, and retention applies to it"
                ),
                archive=ArchiveInfo(
                    path=str(archive), sha256=digest, size_bytes=size, captured_at=captured_at
                ),
                orphan_archive=True,
                finished_at=now,
            ),
        )
        custody_facts.add(
            record,
            custody_facts.orphan(
                record,
                self.service.node_name,
                now,
                CustodyAction.CAPTURED,
                reason=ORPHAN_ARCHIVE,
                sha256=digest,
                size_bytes=size,
                message=f"{archive} found in the checkpoint directory, claimed by no capture",
            ),
        )
        self.store.save(record)
        return record


def _watches(until: datetime | None, now: datetime) -> bool:
    return until is not None and until >= now
