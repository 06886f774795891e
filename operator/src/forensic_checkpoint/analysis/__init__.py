"""Offline checkpoint analysis: ``analyze(path, options) -> Report``.

The package is layered; each subpackage imports only from those below it (import-linter
contract "Analysis layers" in pyproject.toml):

``commands``      the entry points: ``analyzer`` (analyze), ``diff``, ``listing`` (list),
                  ``show_file``, ``search``, and what they share: ``redact``, ``prune``
                  (``--pid``), ``heap`` (glibc malloc tuning for large archives)
``presentation``  text (rich), JSON and YAML renderers (``render.render_report``); exports
                  for other tools: ``html``, ``stix``, ``timesketch``
``findings``      what is wrong: rules as data (``rules.yaml``), the facts they are evaluated
                  over (``facts``, ``process_facts``, ``connections``), credentials, YARA,
                  shell history, mapped binaries, and ``run.FindingsPass`` that drives them
``sections``      the report's sections built from CRIU images: ``processes`` (with
                  ``task_details``, ``memory_maps``, ``namespaces``), ``files``, ``sockets``,
                  ``rootfs``, ``identity``, ``timeline``, ``shared_memory``, and the memory pass
                  (``process_memory`` with ``memory_tasks`` and ``pages_reading``)
``memory``        process memory: pagemaps, page indexes, VMAs, the streaming scanner and its
                  sources, random reads, RSS; ``yara_engine`` is the only user of yara-x
``format``        the archive: tar/gzip/zstd ``streams``, safe ``members``, one-pass ``archive``
                  reading into ``contents``; CRIU images: ``criu_images`` (the framing),
                  ``criu_messages`` (classes from ``criu_proto``, generated at build time),
                  ``criu_json`` (crit-shaped JSON), ``criu_magic``
``model``         the report's dataclasses (``base.ReportModel`` writes camelCase JSON):
                  ``report``, ``process``, ``findings``, ``diff``, ``listing``

``format`` and ``model`` are independent of each other. rich is imported only by
``presentation`` (and the CLI). This module stays import-light: the report model, the CRIU
modules and the archive reader are imported only when ``analyze`` runs, so importing the
package costs nothing for callers that never analyse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.model.report import Report


@dataclass(frozen=True)
class AnalyzerOptions:
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
    #: told how many more bytes of the archive file the pass got through (a progress bar)
    on_progress: Callable[[int], None] | None = field(default=None, compare=False)
    #: the archive's (sha256, size) when the caller hashes it itself (the node agent hashes
    #: every archive as it lands), or a function that returns it when the report needs it
    #: (the agent's hash runs beside the analysis): the analysis reads it once, not hashing
    known_digest: tuple[str, int] | Callable[[], tuple[str, int]] | None = None


def analyze(path: str | Path, options: AnalyzerOptions | None = None) -> Report:
    """Analyse one checkpoint archive. Thread-safe; never prints; raises ArchiveError types."""
    from forensic_checkpoint.analysis.commands.analyzer import run_analysis

    return run_analysis(Path(path), options or AnalyzerOptions())


__all__ = ["AnalyzerOptions", "analyze"]
