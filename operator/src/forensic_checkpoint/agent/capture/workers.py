"""The agent's two bounded worker pools: capture workers and analysis workers.

A capture worker makes a job's kubelet call (or adopts its archive after a restart) and hashes
the archive; then it is free, and the job, now Analyzing, waits for an analysis worker. So a
slow or hostile analysis never holds up a capture, an alert-driven one included.

Before a job waits for a capture worker it waits for its container (:mod:`.call_spacing`),
without a worker. Both pools take their work from a :class:`.FairQueue` with the pod's
namespace as the lane: one namespace's backlog does not delay another namespace's first job.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from forensic_checkpoint.agent.capture.call_spacing import CallSpacer
from forensic_checkpoint.agent.capture.fair_queue import FairQueue
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.api.agent import CaptureRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    key: str
    #: The pod's namespace: the fair queues' lane.
    namespace: str
    #: ``ns/pod/container``: one capture job per container at a time.
    target: str

    @classmethod
    def of(cls, request: CaptureRequest) -> Job:
        target = f"{request.pod_namespace}/{request.pod_name}/{request.container}"
        return cls(request.key, request.pod_namespace, target)


class Workers:
    """``capture(job)`` returns whether the job goes on to ``analyse(job)``; neither raises
    (the service turns an unexpected error into the job's failure)."""

    def __init__(
        self,
        *,
        captures: int,
        analyses: int,
        capture: Callable[[Job], bool],
        analyse: Callable[[Job], None],
        metrics: AgentMetrics,
        stopping: threading.Event,
    ) -> None:
        self._capture = capture
        self._analyse = analyse
        self._metrics = metrics
        self._stopping = stopping
        self._spacer: CallSpacer[Job] = CallSpacer()
        self._capture_queue: FairQueue[Job] = FairQueue()
        self._analysis_queue: FairQueue[Job] = FairQueue()
        self._queued = 0
        #: Jobs waiting for a worker, by namespace (what :meth:`full` looks at).
        self._queued_by_lane: Counter[str] = Counter()
        self._running = 0
        self._counts = threading.Lock()
        self._threads = [
            threading.Thread(target=self._capture_loop, name=f"capture-{n}", daemon=True)
            for n in range(captures)
        ] + [
            threading.Thread(target=self._analysis_loop, name=f"analysis-{n}", daemon=True)
            for n in range(analyses)
        ]
        for thread in self._threads:
            thread.start()

    def capture(self, job: Job) -> None:
        """Queue ``job`` for a capture worker, once its container is free."""
        self._count(queued=1, lane=job.namespace)
        if self._spacer.admit(job.target, job):
            self._capture_queue.put(job.namespace, job)

    def analyse(self, job: Job) -> None:
        self._count(queued=1, lane=job.namespace)
        self._analysis_queue.put(job.namespace, job)

    def queue_depth(self) -> int:
        """Jobs waiting for a worker: for their container and a capture worker, or for an
        analysis worker."""
        return self._queued

    def full(self, namespace: str, bound: int) -> bool:
        """Whether a new job of ``namespace`` must be refused: at ``bound`` waiting jobs only a
        namespace with none waiting gets in, into a reserve of a quarter more (a noisy
        namespace that filled the queue does not keep the others out until it drained); past
        the reserve nobody does."""
        with self._counts:
            if self._queued >= bound + max(1, bound // 4):
                return True
            return self._queued >= bound and self._queued_by_lane[namespace] > 0

    def in_progress(self) -> int:
        """Jobs a capture or analysis worker holds now."""
        return self._running

    def shutdown(self, wait: bool = False) -> None:
        """Stop taking jobs (running ones finish; queued ones stay on disk for the next start)."""
        self._capture_queue.close()
        self._analysis_queue.close()
        if wait:
            for thread in self._threads:
                thread.join()

    def _capture_loop(self) -> None:
        while (job := self._capture_queue.get()) is not None:
            self._count(queued=-1, running=1, lane=job.namespace)
            analyse = False
            try:
                gap = self._spacer.gap(job.target)
                if not (gap and self._stopping.wait(gap)):
                    analyse = self._capture(job)
            except Exception:  # the service's own guard failed: keep the worker
                log.exception("capture %s: unexpected error", job.key)
            finally:
                following = self._spacer.release(job.target)
                if following is not None:
                    self._capture_queue.put(following.namespace, following)
                if analyse:
                    self.analyse(job)
                self._count(running=-1)

    def _analysis_loop(self) -> None:
        while (job := self._analysis_queue.get()) is not None:
            self._count(queued=-1, running=1, lane=job.namespace)
            try:
                self._analyse(job)
            except Exception:
                log.exception("analysis %s: unexpected error", job.key)
            finally:
                self._count(running=-1)

    def _count(self, *, queued: int = 0, running: int = 0, lane: str = "") -> None:
        with self._counts:
            self._queued += queued
            if queued:
                self._queued_by_lane[lane] += queued
                if self._queued_by_lane[lane] <= 0:
                    del self._queued_by_lane[lane]
            self._running += running
            self._metrics.queue_depth.set(self._queued)
            self._metrics.in_progress.set(self._running)
