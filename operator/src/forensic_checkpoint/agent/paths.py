"""Where the kubelet writes checkpoint archives, and how the agent refuses to look elsewhere.

The kubelet answers ``{"items": ["<host path>"]}`` and the agent runs as root with the host's
checkpoint directory mounted, so a path taken on trust could make it hash, serve or delete any
file on the node. Every path goes through :func:`resolve_archive` first.
"""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

from forensic_checkpoint.errors import CaptureError

#: The kubelet's name: ``checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar``; the time has
#: one-second resolution (``time.Now().Format(time.RFC3339)``).
_RFC3339 = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})"


#: Any kubelet archive name, whoever's: pod, then ``<namespace>-<container>`` (``rest``; both may
#: hold ``-``, so they are split only where the container is known), then the time.
ANY_ARCHIVE = re.compile(
    rf"^checkpoint-(?P<pod>[a-z0-9.-]+)_(?P<rest>[a-z0-9-]+)-(?P<ts>{_RFC3339})\.tar$"
)


def archive_name_pattern(pod: str, namespace: str, container: str) -> re.Pattern[str]:
    """Matches the kubelet's archive names for exactly this pod/container.

    Pod and namespace names cannot contain ``_`` and the timestamp is anchored, so container
    ``a`` never matches an archive of container ``a-b``.
    """
    prefix = f"checkpoint-{re.escape(pod)}_{re.escape(namespace)}-{re.escape(container)}-"
    return re.compile(f"^{prefix}(?P<ts>{_RFC3339})\\.tar$")


def archive_time(name: str, pattern: re.Pattern[str]) -> datetime | None:
    """The timestamp in a kubelet archive name, or ``None`` if the name is not this container's."""
    match = pattern.match(name)
    if match is None:
        return None
    return datetime.fromisoformat(match["ts"].replace("Z", "+00:00")).astimezone(UTC)


def resolve_archive(path: str | Path, checkpoint_dir: Path) -> Path:
    """The real path of an archive, checked to be a regular file directly under the checkpoint dir.

    Symlinks are resolved before the check, so a link in the checkpoint dir that points at
    ``/etc/shadow`` is refused like the path itself would be.
    """
    root = Path(os.path.realpath(checkpoint_dir))
    candidate = Path(path)
    if not candidate.is_absolute():
        raise CaptureError(
            f"kubelet returned a relative archive path {str(path)!r}", reason="UnsafeArchivePath"
        )
    real = Path(os.path.realpath(candidate))
    if real.parent != root:
        raise CaptureError(
            f"archive path {str(path)!r} is outside the checkpoint directory {str(root)!r}",
            reason="UnsafeArchivePath",
        )
    try:
        info = real.lstat()
    except FileNotFoundError as exc:
        raise CaptureError(
            f"archive {str(real)!r} named by the kubelet does not exist", reason="ArchiveMissing"
        ) from exc
    if not stat.S_ISREG(info.st_mode):
        raise CaptureError(
            f"archive {str(real)!r} is not a regular file", reason="UnsafeArchivePath"
        )
    return real


def find_archives(
    checkpoint_dir: Path, pod: str, namespace: str, container: str, *, since: datetime
) -> list[Path]:
    """Archives of this container written at or after ``since`` (to the second), oldest first."""
    pattern = archive_name_pattern(pod, namespace, container)
    floor = since.astimezone(UTC).replace(microsecond=0)
    found: list[tuple[datetime, Path]] = []
    try:
        entries = list(os.scandir(checkpoint_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        when = archive_time(entry.name, pattern)
        if when is not None and when >= floor and entry.is_file(follow_symlinks=False):
            found.append((when, Path(entry.path)))
    return [path for _, path in sorted(found)]
