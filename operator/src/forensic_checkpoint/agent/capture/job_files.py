"""The files a capture job owns on the node, its archive and its report: finding an archive no
job claims, serving them, deleting them and counting their bytes.

The archive path of a record is checked again (:func:`paths.resolve_archive`) before it is
served or deleted: a record is data on disk, and only files inside ``--checkpoint-dir`` are
the agent's to touch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from forensic_checkpoint.agent import paths
from forensic_checkpoint.agent.capture.tar_end import is_complete_tar
from forensic_checkpoint.agent.jobs import JobLine, JobRecord, JobStore
from forensic_checkpoint.api.agent import ArchiveInfo, CaptureState, ExportPhase
from forensic_checkpoint.errors import CaptureError, ConflictError, NotFoundError

#: An archive is adopted only once its size has stopped changing for this long.
_STABLE_SECONDS = 1.0


def report_file(record: JobRecord) -> Path:
    key = record.status.key
    if record.report_path is None or not Path(record.report_path).is_file():
        raise NotFoundError(
            f"capture {key} has no report (state {record.status.state})",
            reason="ReportNotReady",
        )
    return Path(record.report_path)


def archive_file(record: JobRecord, checkpoint_dir: Path) -> tuple[Path, ArchiveInfo]:
    key = record.status.key
    info = record.status.archive
    if info is None:
        raise NotFoundError(f"capture {key} has no archive", reason="ArchiveNotReady")
    if record.status.archive_deleted_at is not None:
        raise NotFoundError(
            f"capture {key}: retention deleted the archive "
            f"({record.status.archive_deleted_reason})",
            reason="ArchiveDeleted",
        )
    path = paths.resolve_archive(info.path, checkpoint_dir)
    return path, info


def check_deletable(record: JobRecord) -> None:
    """Refuse (:class:`ConflictError`) to delete a job that runs, whose export runs, or whose
    held archive exists nowhere else."""
    key = record.status.key
    if not record.status.state.terminal:
        raise ConflictError(
            f"capture {key} is {record.status.state}; delete it once it has finished",
            reason="CaptureInProgress",
        )
    export = record.status.export
    if export is not None and export.phase is ExportPhase.EXPORTING:
        raise ConflictError(
            f"capture {key} is being exported; delete it once the export has finished",
            reason="ExportInProgress",
        )
    refuse_held(record)


def refuse_held(record: JobRecord) -> None:
    """Refuse (:class:`ConflictError`) to delete a held archive that exists nowhere else."""
    key = record.status.key
    export = record.status.export
    exported = export is not None and export.phase is ExportPhase.EXPORTED
    on_disk = record.archive_path() is not None and not record.status.archive_deleted_at
    if record.status.held and on_disk and not exported:
        raise ConflictError(
            f"capture {key} is under legal hold and exists nowhere else; lift the hold "
            "(PUT .../hold) or wait for its export",
            reason="HeldNotExported",
        )


def remove(record: JobRecord, checkpoint_dir: Path) -> list[str]:
    """Delete the archive, then the report; the host paths of those that existed."""
    deleted: list[str] = []
    if (path := record.archive_path()) is not None:
        try:
            archive: Path | None = paths.resolve_archive(path, checkpoint_dir)
        except CaptureError:
            archive = None  # already gone, or no longer ours to touch
        if archive is not None:
            archive.unlink(missing_ok=True)
            deleted.append(str(archive))
    if record.report_path is not None:
        report = Path(record.report_path)
        if report.exists():
            report.unlink()
            deleted.append(str(report))
    return deleted


def storage(lines: Iterable[JobLine]) -> tuple[dict[str, int], int]:
    """Jobs by state, and bytes of the archives and reports still on disk."""
    by_state = {state.value: 0 for state in CaptureState}
    stored = 0
    for line in lines:
        by_state[line.digest.state.value] += 1
        for kept in (line.report, line.archive):
            if kept is None:
                continue
            try:
                stored += Path(kept).stat().st_size
            except OSError:
                continue  # removed behind our back: not on disk, not counted
    return by_state, stored


def unclaimed_archive(
    store: JobStore, checkpoint_dir: Path, record: JobRecord, since: datetime
) -> Path | None:
    """The oldest archive of ``record``'s container written since ``since`` (to the second)
    that no other job claims."""
    request = record.request
    candidates = paths.find_archives(
        checkpoint_dir,
        request.pod_name,
        request.pod_namespace,
        request.container,
        since=since,
    )
    if not candidates:
        return None
    claimed = {
        line.archive
        for key, line in store.lines().items()
        if line.archive is not None and key != record.status.key
    }
    for candidate in candidates:
        try:
            real = paths.resolve_archive(candidate, checkpoint_dir)
        except CaptureError:
            continue  # vanished or replaced since the directory scan
        if str(real) not in claimed:
            return real
    return None


def is_stable(path: Path, interval: float) -> bool:
    """The runtime may still be writing: adopt only a whole tar (see :mod:`.tar_end`) whose
    size has stopped changing."""
    try:
        before = path.stat()
        if time.time() - before.st_mtime < _STABLE_SECONDS:
            time.sleep(interval)
            after = path.stat()
            if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
                return False
    except FileNotFoundError:
        return False
    return is_complete_tar(path)
