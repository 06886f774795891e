"""One capture job per container at a time, its kubelet calls at least a second apart.

The kubelet names archives to the second (``checkpoint-<pod>_<ns>-<ctr>-<time>.tar``): two
calls for one container within a second would target the same file, and an adoption after a
restart could take the archive of a new call for the same container as its own.

The gate is passed BEFORE a job waits for a capture worker (:mod:`.workers`): a job whose
container is busy waits here, holding no worker, so captures of one slow container hold at
most one worker between them, and captures of other containers start at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

#: Seconds between two calls for one container: the kubelet's one-second names, and a margin.
MIN_GAP = 1.05

T = TypeVar("T")


class CallSpacer(Generic[T]):
    def __init__(self, min_gap: float = MIN_GAP) -> None:
        self.min_gap = min_gap
        self._lock = threading.Lock()
        #: Containers (``ns/pod/container``) a job holds now, with the jobs waiting for each.
        self._busy: dict[str, deque[T]] = {}
        #: When the last job of a container ended, kept for ``min_gap`` seconds.
        self._ended: dict[str, float] = {}

    def admit(self, target: str, job: T) -> bool:
        """Whether ``job`` holds ``target`` now; otherwise it waits for :meth:`release`."""
        with self._lock:
            waiting = self._busy.get(target)
            if waiting is None:
                self._busy[target] = deque()
                return True
            waiting.append(job)
            return False

    def release(self, target: str) -> T | None:
        """End the job holding ``target``: the next job waiting for it, which holds it now."""
        now = time.monotonic()
        with self._lock:
            self._ended = {t: at for t, at in self._ended.items() if now - at < self.min_gap}
            self._ended[target] = now
            waiting = self._busy[target]
            if waiting:
                return waiting.popleft()
            del self._busy[target]
            return None

    def gap(self, target: str) -> float:
        """Seconds the job holding ``target`` waits before its call, since the last one ended."""
        with self._lock:
            ended = self._ended.get(target)
        return 0.0 if ended is None else max(0.0, self.min_gap - (time.monotonic() - ended))

    def waiting(self) -> int:
        """Jobs waiting for their container."""
        with self._lock:
            return sum(len(waiting) for waiting in self._busy.values())
