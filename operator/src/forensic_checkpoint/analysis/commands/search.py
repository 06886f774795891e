"""``search_archive``: the memory search alone, as ``checkpointctl memparse --search`` does.

It reuses the analyzer's parts: one archive pass that keeps the small CRIU images (on a plain
tar the pages are seeked over; a large compressed archive's are searched as they stream by),
the process tree for pids and VMAs, and the memory engine through ``MemoryPass`` (no argv/env
reads, no findings, no file hash).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forensic_checkpoint.analysis.commands.redact import mask_searches
from forensic_checkpoint.analysis.format.archive import scan_archive
from forensic_checkpoint.analysis.format.contents import DEFAULT_LIMITS, ArchiveLimits
from forensic_checkpoint.analysis.model.report import MemorySearch, MemorySummary
from forensic_checkpoint.analysis.sections.files import FileTable
from forensic_checkpoint.analysis.sections.process_memory import MemoryPass
from forensic_checkpoint.analysis.sections.processes import build_process_tree
from forensic_checkpoint.errors import ConfigError


@dataclass
class SearchResult:
    """The output of ``search``: ``memory`` is the analyze report's memory section, so its JSON
    matches ``analyze``'s ``memory`` (the keys keep the order the command has always printed)."""

    archive: str
    redacted: bool
    memory: MemorySummary
    pid: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON document, keys in the order the former model dumped them."""
        return {
            "archive": self.archive,
            "redacted": self.redacted,
            "pid": self.pid,
            "memory": self.memory.to_json_dict(),
            "warnings": self.warnings,
        }


@dataclass
class SearchOptions:
    literals: list[str] = field(default_factory=list)
    regexes: list[str] = field(default_factory=list)
    pid: int | None = None
    context: int = 32
    max_matches: int = 100
    reveal: bool = False
    #: told how many more bytes of the archive file the pass got through (a progress bar)
    on_progress: Callable[[int], None] | None = None


def search_archive(
    path: Path, options: SearchOptions, limits: ArchiveLimits = DEFAULT_LIMITS
) -> SearchResult:
    if not options.literals and not options.regexes:
        raise ConfigError("give at least one PATTERN or --regex")
    # a large compressed archive is searched while it streams by: one pass
    memory_pass = MemoryPass(
        searches=options.literals,
        regexes=options.regexes,
        read_args=False,
        context=options.context,
        max_matches=options.max_matches,
    )
    contents = scan_archive(
        path,
        limits=limits,
        hash_file=False,
        pages_visitor=memory_pass.visit,
        on_progress=options.on_progress,
    )
    warnings = list(contents.warnings)
    table = FileTable.load(contents.data, warnings)
    tree = build_process_tree(contents.data, table, warnings, memory_only=True)
    if options.pid is not None:
        # memparse --pid semantics: that one process (its shared objects included).
        tree.processes = [p for p in tree.processes if p.pid == options.pid]
        if not tree.processes:
            raise ConfigError(f"no process with pid {options.pid} in {path}")
    memory = memory_pass.run(contents, tree, table, warnings)
    searches: list[MemorySearch] = memory.searches
    if not options.reveal:
        mask_searches(searches)
    return SearchResult(
        archive=str(path),
        redacted=not options.reveal,
        pid=options.pid,
        memory=MemorySummary(page_size=memory.page_size, searches=searches),
        warnings=warnings,
    )
