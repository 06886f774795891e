"""Offline checkpoint analysis: ``analyze(path, options) -> Report``.

This module stays import-light: the report model, pycriu and the archive reader are imported
only when ``analyze`` runs, so importing the package costs nothing for callers that never
analyse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.model.report import Report


@dataclass(frozen=True)
class AnalysisOptions:
    #: literal memory searches (text, UTF-8 encoded before searching raw bytes)
    searches: list[str] = field(default_factory=list)
    #: regular expressions over raw memory bytes (Python `re` on bytes)
    regexes: list[str] = field(default_factory=list)
    #: show secrets (env values, regex matches) instead of masking them
    reveal: bool = False
    #: bytes of context on each side of a memory match
    context: int = 32
    #: most matches kept per search pattern
    max_matches: int = 100
    #: read argv/env from process memory (needs a pass over pages-*.img)
    read_process_memory: bool = True
    #: evaluate the findings rules (analysis/findings)
    findings: bool = True
    #: YARA rule files and folders scanned over memory, files and queues (findings)
    yara: list[str] = field(default_factory=list)
    #: look for credentials in all process memory (findings; a yara-x scan of every page)
    memory_secrets: bool = True


def analyze(path: str | Path, options: AnalysisOptions | None = None) -> Report:
    """Analyse one checkpoint archive. Thread-safe; never prints; raises ArchiveError types."""
    from forensic_checkpoint.analysis.commands.analyzer import run_analysis

    return run_analysis(Path(path), options or AnalysisOptions())


__all__ = ["AnalysisOptions", "analyze"]
