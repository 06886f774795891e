"""One kubelet call at a time per container, at least a second apart.

The kubelet names archives to the second (``checkpoint-<pod>_<ns>-<ctr>-<time>.tar``): two
calls for one container within a second would target the same file.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

#: Seconds between two calls for one container: the kubelet's one-second names, and a margin.
MIN_GAP = 1.05


class CallSpacer:
    def __init__(self, min_gap: float = MIN_GAP) -> None:
        self.min_gap = min_gap
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._last_call: dict[str, float] = {}

    @contextlib.contextmanager
    def call(self, target: str) -> Iterator[None]:
        """Hold ``target`` (``ns/pod/container``) for one call, after waiting out the gap since
        its previous call ended."""
        with self._lock:
            lock = self._locks.setdefault(target, threading.Lock())
        with lock:
            last = self._last_call.get(target)
            if last is not None:
                gap = self.min_gap - (time.monotonic() - last)
                if gap > 0:
                    time.sleep(gap)
            try:
                yield
            finally:
                self._last_call[target] = time.monotonic()
