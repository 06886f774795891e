"""Runs the analyzer on a captured archive, in worker processes.

Analysis is CPU-bound pure Python: in the agent's threads it would serialise on the GIL and
slow the HTTP API down. A small process pool keeps it off the API's back and also contains a
hostile archive that makes the analyzer misbehave (a crashed worker fails one job, not the agent).
Workers are spawned, not forked: the agent has threads, and forking a threaded process can
copy a held lock.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from forensic_checkpoint.api.agent import AnalysisOptions
from forensic_checkpoint.errors import ArchiveError, ForensicCheckpointError

#: (archive, report path, options) -> None; writes the report JSON (0600) or raises.
Analyzer = Callable[[Path, Path, AnalysisOptions], None]


def analyze_to_file(archive: Path, report_path: Path, options: AnalysisOptions) -> None:
    """Analyse ``archive`` and write the report JSON (camelCase) to ``report_path``."""
    from forensic_checkpoint import analysis
    from forensic_checkpoint.agent.jobs import write_private

    report = analysis.analyze(
        archive,
        analysis.AnalysisOptions(
            searches=list(options.searches),
            regexes=list(options.regexes),
            reveal=options.reveal,
        ),
    )
    write_private(report_path, report.model_dump_json(by_alias=True).encode())


def _worker(archive: str, report_path: str, options_json: str) -> tuple[str, str] | None:
    """Process-pool entry point: errors come back as (reason, message), not as pickled objects."""
    try:
        analyze_to_file(
            Path(archive), Path(report_path), AnalysisOptions.model_validate_json(options_json)
        )
    except ForensicCheckpointError as exc:
        return exc.reason, exc.message
    except Exception as exc:  # report it; never kill the worker pool
        return "AnalysisFailed", f"{type(exc).__name__}: {exc}"[:1024]
    return None


class ProcessAnalyzer:
    """An :data:`Analyzer` backed by a process pool of ``workers`` processes."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, min(2, os.cpu_count() or 1))
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
        )

    def __call__(self, archive: Path, report_path: Path, options: AnalysisOptions) -> None:
        try:
            failure = self._pool.submit(
                _worker, str(archive), str(report_path), options.model_dump_json()
            ).result()
        except BrokenProcessPool as exc:
            # A worker died (OOM, a crash in a C extension): replace the pool for later jobs.
            self._pool = self._new_pool()
            raise ArchiveError(
                "the analysis worker died while reading this archive", reason="AnalysisCrashed"
            ) from exc
        if failure is not None:
            reason, message = failure
            raise ForensicCheckpointError(message, reason=reason)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
