"""``list``: one line per checkpoint archive in a directory, like `checkpointctl list`.

Only identity is read (no memory, no rootfs listing); an unreadable file becomes a row with
its error instead of stopping the listing.
"""

from __future__ import annotations

from pathlib import Path

from forensic_checkpoint.analysis.format.archive import scan_archive
from forensic_checkpoint.analysis.model.listing import CheckpointList, ListedCheckpoint
from forensic_checkpoint.analysis.sections.identity import build_identity, detect_engine, load_json
from forensic_checkpoint.errors import ForensicCheckpointError

#: the kubelet's default checkpoint directory
KUBELET_CHECKPOINTS = Path("/var/lib/kubelet/checkpoints")


def _as_dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def describe(path: Path) -> ListedCheckpoint:
    try:
        row = ListedCheckpoint(path=str(path), size_bytes=path.stat().st_size)
    except OSError as exc:
        return ListedCheckpoint(path=str(path), size_bytes=0, error=f"cannot open: {exc.strerror}")
    try:
        contents = scan_archive(path, spool_pages=False)
    except ForensicCheckpointError as exc:
        row.error = exc.message
        return row
    warnings: list[str] = []
    config = _as_dict(load_json(contents.data.get("config.dump"), "config.dump", warnings))
    spec = _as_dict(load_json(contents.data.get("spec.dump"), "spec.dump", warnings))
    status = _as_dict(load_json(contents.data.get("status.dump"), "status.dump", warnings))
    engine = detect_engine(spec, config, {m.name for m in contents.members})
    directory = contents.member("checkpoint") or contents.member("checkpoint/")
    identity = build_identity(
        config=config,
        spec=spec,
        status_dump=status,
        network_status=None,
        hostname=None,
        domainname=None,
        checkpoint_mtime=directory.mtime if directory else None,
    )
    row.engine = engine
    row.namespace = identity.namespace
    row.pod = identity.pod
    row.container = identity.name
    row.checkpointed_at = identity.checkpointed_at
    return row


def list_checkpoints(paths: list[Path]) -> CheckpointList:
    """Directories are scanned (not recursively) for ``checkpoint-*`` files, the kubelet's
    naming; files are taken as given."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("checkpoint-*") if p.is_file()))
        else:
            files.append(path)
    return CheckpointList(checkpoints=[describe(p) for p in files])
