"""Analyses that failed for want of disk space, tried again once space may have returned.

An analysis writes its report to ``<state-dir>/reports``; on a full disk that fails although
the archive is whole and hashed. Failing the job for good would lose the analysis of evidence
that exists. So a failure whose reason is in :data:`RETRYABLE` keeps the job ``Analyzing``
with that reason and a message saying it will be retried, and :class:`AnalysisRetrier`, a
background pass, queues it again ``delay`` seconds later, up to :data:`MAX_ATTEMPTS` attempts
in all; the last failure fails the job.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from forensic_checkpoint.agent.background import BackgroundPass
from forensic_checkpoint.agent.jobs import JobRecord, utcnow
from forensic_checkpoint.api.agent import CaptureState
from forensic_checkpoint.errors import ForensicCheckpointError

if TYPE_CHECKING:
    from forensic_checkpoint.agent.capture.service import CaptureService

log = logging.getLogger(__name__)

#: The analysis process reports ENOSPC/EDQUOT as this reason (``analysis_runner``).
NO_SPACE = "AnalysisNoSpace"
RETRYABLE = frozenset({NO_SPACE})
MAX_ATTEMPTS = 12
DEFAULT_RETRY_SECONDS = 300.0


def keep_for_retry(record: JobRecord, exc: ForensicCheckpointError, now: datetime) -> bool:
    """Mark ``record`` as waiting for another analysis attempt (the caller saves it); False
    when the failure is final (not retryable, or the attempts are used up)."""
    if exc.reason not in RETRYABLE or record.analysis_failures + 1 >= MAX_ATTEMPTS:
        return False
    record.analysis_failures += 1
    record.analysis_failed_at = now
    record.status.reason = exc.reason
    record.status.message = (
        f"analysis failed: {exc.message}; the agent tries again once space returns "
        f"(attempt {record.analysis_failures} of {MAX_ATTEMPTS} failed)"
    )
    log.warning("capture %s: %s", record.status.key, record.status.message)
    return True


def waiting(record: JobRecord) -> bool:
    """Analyzing, and waiting for the retrier rather than queued."""
    return record.status.state is CaptureState.ANALYZING and record.analysis_failed_at is not None


class AnalysisRetrier(BackgroundPass):
    """Every ``interval`` seconds: queue again each waiting analysis that failed at least
    ``delay`` seconds ago (at once for those a restart found waiting)."""

    name = "analysis-retry"

    def __init__(
        self,
        service: CaptureService,
        *,
        delay: float = DEFAULT_RETRY_SECONDS,
        interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.service = service
        self.delay = delay
        self.interval = interval

    def wait_seconds(self) -> float | None:
        return self.interval

    def run_pass(self) -> None:
        now = utcnow()
        for record in self.service.store.all():
            failed_at = record.analysis_failed_at
            if failed_at is None or (now - failed_at).total_seconds() < self.delay:
                continue
            key = record.status.key
            store = self.service.store
            with store.locked():
                current = store.get(key)
                if current is None or not waiting(current):
                    continue  # deleted, or queued again meanwhile
                current.analysis_failed_at = None
                store.save(current)
            log.info("capture %s: analysis tried again", key)
            self.service.resume(key)
