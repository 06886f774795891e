"""Runs the analyzer on a captured archive, in worker processes.

Analysis is CPU-bound pure Python: in the agent's threads it would serialise on the GIL and
slow the HTTP API down. Separate processes keep it off the API's back and contain a hostile
archive that makes the analyzer loop or crash: that fails one job, not the agent. A job's
analysis can be stopped (its capture was deleted): the process is killed, so it neither keeps
the archive open nor writes its report afterwards.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from forensic_checkpoint.api.agent import CaptureRequest
from forensic_checkpoint.api.forensiccheckpoint import AnalysisSummary
from forensic_checkpoint.errors import ArchiveError, ForensicCheckpointError

#: Imported once by the forkserver, so each analysis process starts warm.
_PRELOAD = [
    "forensic_checkpoint.agent.capture.analysis_runner",
    "forensic_checkpoint.agent.capture.summary",
    "forensic_checkpoint.analysis.commands.analyzer",
]


@dataclass(frozen=True)
class ArchiveToAnalyse:
    """An archive handed to the analysis while the agent still hashes it: ``digest()`` blocks
    until the agent's own (sha256, size) is known, and raises if the hash failed. The report
    carries that digest; the analysis never hashes the archive itself."""

    path: str
    digest: Callable[[], tuple[str, int]]


#: (the archive, report path, the capture's request, stop) -> the report's status digest;
#: writes the report JSON (0600) or raises. Once ``stop`` is set it should raise
#: :data:`STOPPED` soon, and must not touch the archive or write the report after it returned.
Analyzer = Callable[[ArchiveToAnalyse, Path, CaptureRequest, threading.Event], AnalysisSummary]

#: Reason of an analysis stopped because its capture was deleted.
STOPPED = "AnalysisStopped"
#: Seconds between two looks at a job's stop event while its analysis runs.
_STOP_POLL = 0.1


def default_workers() -> int:
    """Analyses at once when ``--analysis-workers`` is not given: the cores, at most two."""
    return max(1, min(2, os.cpu_count() or 1))


def analyze_to_file(
    archive: ArchiveToAnalyse, report_path: Path, request: CaptureRequest
) -> AnalysisSummary:
    """Analyse ``archive``, write the report JSON (camelCase) to ``report_path`` and return its
    status digest for ``request``'s container. The report carries the agent's own hash of the
    archive: the analysis reads it once and does not hash it again."""
    from forensic_checkpoint import analysis
    from forensic_checkpoint.agent.capture.summary import summarize
    from forensic_checkpoint.agent.jobs import write_private

    options = request.analysis
    report = analysis.analyze(
        archive.path,
        analysis.AnalyzerOptions(
            searches=list(options.searches),
            regexes=list(options.regexes),
            reveal=options.reveal,
            known_digest=archive.digest,
        ),
    )
    write_private(report_path, report.to_json().encode())
    return summarize(
        report, pod=request.pod_name, namespace=request.pod_namespace, container=request.container
    )


def _child(
    conn: Connection, digests: Connection, archive: str, report_path: str, request_json: str
) -> None:
    """Entry point of one analysis process: the outcome goes back as the summary's JSON text or
    as (reason, message), never as a pickled exception or model (the parent must not unpickle
    what a hostile archive shaped; it validates the JSON against the bounded model). The
    agent's digest of the archive arrives on ``digests`` when its hash is done."""
    outcome: str | tuple[str, str]
    try:
        from forensic_checkpoint.analysis.commands.heap import tune_for

        tune_for([archive])  # this process exists for one analysis
        summary = analyze_to_file(
            ArchiveToAnalyse(archive, lambda: _receive_digest(digests)),
            Path(report_path),
            CaptureRequest.model_validate_json(request_json),
        )
        outcome = summary.model_dump_json(by_alias=True)
    except ForensicCheckpointError as exc:
        outcome = (exc.reason, exc.message)
    except Exception as exc:  # reported to the parent, which fails only this job
        outcome = failure_outcome(exc)
    conn.send(outcome)
    conn.close()


def _receive_digest(digests: Connection) -> tuple[str, int]:
    """The agent's (sha256, size), sent as text: an empty message means its hash failed."""
    text = digests.recv_bytes(256).decode()
    digest, _, size = text.partition(" ")
    if not digest:
        raise ArchiveError("the agent could not hash the archive", reason="ArchiveUnreadable")
    return digest, int(size)


def failure_outcome(exc: Exception) -> tuple[str, str]:
    """(reason, message) of an unexpected analysis failure. A full disk is ``AnalysisNoSpace``:
    the agent tries that analysis again later (:mod:`.analysis_retry`)."""
    message = f"{type(exc).__name__}: {exc}"[:1024]
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "AnalysisNoSpace", message
    return "AnalysisFailed", message


class ProcessAnalyzer:
    """An :data:`Analyzer` that runs each analysis in its own process, ``workers`` at a time.

    One process per archive gives each job its own deadline (``timeout``: the process is
    killed, the job fails with ``AnalysisTimeout``) and its own crash (``AnalysisCrashed``)
    without taking other jobs' analyses down, as killing a worker of a shared pool would, and
    its own stop (``stop`` set: the process is killed within a tenth of a second, and the call
    raises :data:`STOPPED`). Processes come from a forkserver that has the analyzer imported
    already, so starting one costs milliseconds, and no thread state of the agent is copied.
    """

    def __init__(self, workers: int | None = None, *, timeout: float = 900.0) -> None:
        self.workers = workers or default_workers()
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(self.workers)
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)

    def __call__(
        self,
        archive: ArchiveToAnalyse,
        report_path: Path,
        request: CaptureRequest,
        stop: threading.Event | None = None,
    ) -> AnalysisSummary:
        stop = stop or threading.Event()
        while not self._slots.acquire(timeout=_STOP_POLL):
            _check(stop)
        try:
            outcome = self._run(archive, report_path, request, stop)
        finally:
            self._slots.release()
        if isinstance(outcome, tuple):
            reason, message = outcome
            raise ForensicCheckpointError(message, reason=reason)
        try:
            return AnalysisSummary.model_validate_json(outcome)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ArchiveError(
                "the analysis process returned an invalid summary", reason="AnalysisFailed"
            ) from exc

    def _run(
        self,
        archive: ArchiveToAnalyse,
        report_path: Path,
        request: CaptureRequest,
        stop: threading.Event,
    ) -> str | tuple[str, str]:
        """The child's outcome; the child is gone when this returns or raises."""
        receiver, sender = self._context.Pipe(duplex=False)
        digest_in, digest_out = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_child,
            args=(sender, digest_in, archive.path, str(report_path), request.model_dump_json()),
            name="analysis",
            daemon=True,
        )
        process.start()
        sender.close()
        digest_in.close()
        threading.Thread(
            target=_send_digest, args=(archive, digest_out), name="digest", daemon=True
        ).start()
        deadline = time.monotonic() + self.timeout
        try:
            while not receiver.poll(min(_STOP_POLL, max(0.0, deadline - time.monotonic()))):
                _check(stop)
                if time.monotonic() >= deadline:
                    raise ForensicCheckpointError(
                        f"analysis did not finish within {self.timeout:g} s; stopped",
                        reason="AnalysisTimeout",
                    )
            outcome: str | tuple[str, str] = receiver.recv()
        except EOFError as exc:
            raise ArchiveError(
                f"the analysis process died (exit code {process.exitcode}) on this archive",
                reason="AnalysisCrashed",
            ) from exc
        finally:
            receiver.close()
            if process.is_alive():
                process.kill()
            process.join()
        return outcome


def _send_digest(archive: ArchiveToAnalyse, out: Connection) -> None:
    """Hand the agent's digest to the analysis process once the hash is done."""
    try:
        digest, size = archive.digest()
        message = f"{digest} {size}"
    except Exception:  # the analysis fails with ArchiveUnreadable; the stage reports the cause
        message = ""
    try:
        out.send_bytes(message.encode())
    except OSError:
        pass  # the analysis process has ended already
    finally:
        out.close()


def _check(stop: threading.Event) -> None:
    if stop.is_set():
        raise ForensicCheckpointError("analysis stopped: the capture was deleted", reason=STOPPED)
