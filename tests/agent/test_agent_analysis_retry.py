"""An analysis that failed for want of disk space is tried again once space returns (issue 15,
item 11). Before the fix the job failed for good: the archive was whole, the analysis never
came."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.agent.agent_support import DirKubelet, hashing_analyzer, request
from tests.factories import capture_service

from forensic_checkpoint.agent.capture import analysis_retry
from forensic_checkpoint.agent.capture.analysis_retry import AnalysisRetrier
from forensic_checkpoint.agent.capture.analysis_runner import ArchiveToAnalyse, failure_outcome
from forensic_checkpoint.agent.capture.service import CaptureService
from forensic_checkpoint.api.agent import CaptureRequest, CaptureState, CaptureStatus
from forensic_checkpoint.api.forensiccheckpoint import AnalysisSummary
from forensic_checkpoint.errors import ForensicCheckpointError

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


class FullDiskOnce:
    """The analyzer as ProcessAnalyzer presents a child that hit ENOSPC writing the report,
    ``failures`` times; then the disk has room again."""

    def __init__(self, failures: int = 1) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(
        self, archive: ArchiveToAnalyse, report: Path, req: CaptureRequest, stop: threading.Event
    ) -> AnalysisSummary:
        self.calls += 1
        if self.calls <= self.failures:
            reason, message = failure_outcome(ENOSPC)
            raise ForensicCheckpointError(message, reason=reason)
        return hashing_analyzer(archive, report, req, stop)


@pytest.fixture
def make_service(tmp_path: Path, sample_tar: Path) -> Iterator[Callable[..., CaptureService]]:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    services: list[CaptureService] = []

    def make(analyzer: FullDiskOnce) -> CaptureService:
        service = capture_service(
            tmp_path / "state", DirKubelet(checkpoints, sample_tar), checkpoints, analyzer
        )
        services.append(service)
        return service

    yield make
    for service in services:
        service.shutdown(wait=True)


def _wait(
    service: CaptureService, key: str, done: Callable[[CaptureStatus], bool]
) -> CaptureStatus:
    deadline = time.monotonic() + 60  # a bound, not a timing claim: 2 loaded cores are slow
    while time.monotonic() < deadline:
        status = service.status(key)
        if done(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{key}: {service.status(key)}")


def _retried(service: CaptureService, key: str, *, delay: float) -> CaptureStatus:
    """Run the retry pass until ``key`` has finished; its final status."""
    retrier = AnalysisRetrier(service, delay=delay, interval=0.02)
    retrier.start()
    try:
        return _wait(service, key, lambda s: s.state.terminal)
    finally:
        retrier.stop()


def test_a_full_disk_during_analysis_is_retried_and_the_summary_appears(
    make_service: Callable[..., CaptureService],
) -> None:
    analyzer = FullDiskOnce()
    service = make_service(analyzer)
    service.submit(request("nospace-app"))
    waiting = _wait(
        service,
        "nospace-app",
        lambda s: s.state.terminal or s.reason == analysis_retry.NO_SPACE,
    )
    assert waiting.state is CaptureState.ANALYZING, waiting
    assert waiting.archive is not None and waiting.summary is None
    assert "tries again once space returns" in (waiting.message or "")
    time.sleep(0.2)
    assert analyzer.calls == 1  # nothing retries without the background pass

    done = _retried(service, "nospace-app", delay=0.1)
    assert done.state is CaptureState.COMPLETED, done
    assert done.summary is not None and done.summary.process_count == 1
    assert analyzer.calls == 2


def test_a_restarted_agent_leaves_a_waiting_analysis_to_the_retrier(
    make_service: Callable[..., CaptureService],
) -> None:
    first = make_service(FullDiskOnce(failures=99))
    first.submit(request("later-app"))
    _wait(first, "later-app", lambda s: s.reason == analysis_retry.NO_SPACE)
    first.shutdown(wait=True)

    analyzer = FullDiskOnce(failures=0)
    second = make_service(analyzer)
    second.start()
    time.sleep(0.2)
    assert analyzer.calls == 0 and second.status("later-app").state is CaptureState.ANALYZING
    done = _retried(second, "later-app", delay=0.0)
    assert done.state is CaptureState.COMPLETED and analyzer.calls == 1


def test_the_last_attempt_fails_the_job(make_service: Callable[..., CaptureService]) -> None:
    service = make_service(FullDiskOnce(failures=analysis_retry.MAX_ATTEMPTS))
    service.submit(request("never-app"))
    done = _retried(service, "never-app", delay=0.0)
    assert (done.state, done.reason) == (CaptureState.FAILED, analysis_retry.NO_SPACE)


def test_only_a_full_disk_is_retried() -> None:
    assert failure_outcome(ENOSPC)[0] == analysis_retry.NO_SPACE
    assert failure_outcome(OSError(errno.EDQUOT, "Disk quota exceeded"))[0] == "AnalysisNoSpace"
    assert failure_outcome(OSError(errno.EIO, "I/O error"))[0] == "AnalysisFailed"
    assert failure_outcome(ValueError("bad archive"))[0] == "AnalysisFailed"
