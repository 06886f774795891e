"""A daemon thread that repeats one pass: now, whenever woken, and at least every so often.

The export worker and the retention keeper both work off the job records on disk, so a pass
that fails is logged and simply tried again on the next wake-up or timeout.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


class BackgroundPass:
    """Subclasses implement :meth:`run_pass` and :meth:`wait_seconds`."""

    #: thread name, also used in the log line of a failed pass
    name = "background"
    #: added to the thread's nice value (Linux schedules threads alone): a pass that must not
    #: take the CPU from the captures and analyses on a busy node sets it
    nice = 0

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_pass(self) -> None:
        raise NotImplementedError

    def wait_seconds(self) -> float | None:
        """How long to sleep between passes when nobody wakes us (None: until woken)."""
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        if self.nice:
            tid = threading.get_native_id()
            try:
                niceness = os.getpriority(os.PRIO_PROCESS, tid) + self.nice
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
            except OSError as exc:  # not Linux, or a seccomp profile that forbids it
                log.info("%s thread keeps its priority: %s", self.name, exc)
        while not self._stop.is_set():
            try:
                self.run_pass()
            except Exception:
                log.exception("%s pass failed", self.name)
            self._wake.wait(timeout=self.wait_seconds())
            self._wake.clear()
