"""Streaming sha256 of an archive: archives are as large as the container's memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 4 * 1024 * 1024


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex digest, size in bytes) read in fixed chunks, so memory stays bounded."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
