"""Streaming sha256 of an archive (archives are as large as the container's memory), in the
caller's thread or in one of its own: the agent's hash of a landed archive, which runs beside
the analysis, and the analyzer's own hash of an uncompressed archive it reads."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

#: One buffer of this size per hash, read into (not a new bytes object per read): each hash
#: runs in a thread of its own, and glibc keeps freed large blocks in that thread's malloc arena,
#: so 4 MiB reads left about 100 MiB behind after a 64-capture burst (benchmarks/agent_scale).
_CHUNK = 1024 * 1024


class HashStopped(Exception):
    """The hash was stopped before the end of the file (its capture was deleted)."""


def sha256_file(path: Path, stop: threading.Event | None = None) -> tuple[str, int]:
    """(hex digest, size in bytes) read in fixed chunks into one buffer, so memory stays
    bounded; raises :class:`HashStopped` soon after ``stop`` is set."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            if stop is not None and stop.is_set():
                raise HashStopped(str(path))
            digest.update(view[:count])
            size += count
    return digest.hexdigest(), size


class BackgroundHash:
    """sha256 of ``path`` in a thread (hashlib releases the GIL), so the agent's hash and the
    analysis of the same archive run side by side: each read of the file is from the page
    cache the runtime just filled, and the wall time is the longer of the two, not their sum.
    ``on_done`` is called in the thread with the result (not on failure)."""

    def __init__(
        self,
        path: Path,
        *,
        stop: threading.Event | None = None,
        on_done: Callable[[tuple[str, int]], None] | None = None,
    ) -> None:
        self._path, self._stop, self._on_done = path, stop, on_done
        self._result: tuple[str, int] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"hash {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = sha256_file(self._path, self._stop)
            if self._on_done is not None:
                self._on_done(self._result)
        except BaseException as exc:  # handed to result()'s caller
            self._error = exc

    def result(self) -> tuple[str, int]:
        """(digest, size) once the hash is done; raises what the hash raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None  # noqa: S101 - set when no error was
        return self._result
