"""YARA (yara-x) over a checkpoint: process memory, shared memory, files, tmpfs, queues.

Memory is scanned per contiguous pagemap run (present pages adjacent in memory and in the
pages file), never per page: yara-x costs ~30-40 us per call, so 4 KiB calls would run at
~80 MiB/s instead of ~1 GB/s (findings-research.md 2.1; volatility3#1195 was this bug).
Runs longer than ``sources.PIECE`` come in pieces that overlap by ``sources.OVERLAP``; a
match that ends inside the overlap was counted in the previous piece and is skipped. Each
hit keeps the rule's author metadata: some rule licences (DRL 1.1) require it in every
output.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forensic_checkpoint.analysis.findings.sources import iter_runs
from forensic_checkpoint.analysis.format.streams import Readable
from forensic_checkpoint.analysis.memory import PageIndex
from forensic_checkpoint.analysis.memory.yara_engine import (
    RuleSourceError,
    compile_sources,
    new_scanner,
)
from forensic_checkpoint.analysis.model.findings import Evidence, Finding, Severity, as_severity
from forensic_checkpoint.errors import ConfigError

RULE_SUFFIXES = (".yar", ".yara")
#: matches kept per rule and target (the count of all of them is reported)
MAX_OFFSETS = 20


def rule_files(paths: Iterable[str | Path]) -> list[Path]:
    """Rule files from files and folders (folders: *.yar / *.yara, recursively, sorted)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in RULE_SUFFIXES))
        elif path.is_file():
            out.append(path)
        else:
            raise ConfigError(f"--yara {raw}: no such file or directory")
    if not out:
        raise ConfigError("--yara: no rule files (*.yar, *.yara) found")
    return out


def compile_rules(paths: Iterable[str | Path]) -> Any:
    """One yara-x Rules object; each file is its own namespace (its stem)."""
    sources = (
        (path.stem, path.read_text(encoding="utf-8", errors="replace"), str(path))
        for path in rule_files(paths)
    )
    try:
        return compile_sources(sources)
    except RuleSourceError as exc:
        raise ConfigError(f"YARA rule file {exc.origin}: {str(exc).strip()[:500]}") from exc


def compile_rules_from_source(source: str, namespace: str = "rules") -> Any:
    """Rules from text (tests, generated rule sets)."""
    try:
        return compile_sources([(namespace, source, None)])
    except RuleSourceError as exc:
        raise ConfigError(f"YARA rules: {str(exc).strip()[:500]}") from exc


@dataclass
class Hit:
    rule: str
    namespace: str
    meta: dict[str, str]
    #: "memory" | "shared-memory" | "rootfs-diff" | "ghost-file" | "tmpfs" | "socket-queue" | ...
    kind: str
    target: str
    pid: int | None = None
    #: absolute addresses (memory) or offsets (files)
    offsets: list[int] = field(default_factory=list)
    count: int = 0
    patterns: set[str] = field(default_factory=set)
    #: shared memory: every process that maps the object or holds it open
    readers: tuple[int, ...] = ()


class YaraScanner:
    """Scans buffers and collects hits per (rule, target)."""

    def __init__(self, rules: Any) -> None:
        self._scanner = new_scanner(rules)
        self.hits: dict[tuple[str, str, str], Hit] = {}
        self.scanned_bytes = 0
        self.calls = 0
        #: time spent inside yara-x (benchmarks separate it from reading the archive)
        self.scan_seconds = 0.0

    def scan(
        self,
        data: bytes,
        *,
        kind: str,
        target: str,
        base: int = 0,
        pid: int | None = None,
        seen: int = 0,
        readers: tuple[int, ...] = (),
    ) -> None:
        """Scan one buffer at ``base``; matches ending in its first ``seen`` bytes (an overlap
        with the previous piece) were counted already. ``readers``: the processes that can
        read a shared memory object's bytes."""
        self.calls += 1
        self.scanned_bytes += len(data)
        started = time.perf_counter()
        results = self._scanner.scan(data)
        self.scan_seconds += time.perf_counter() - started
        for rule in results.matching_rules:
            key = (f"{rule.namespace}.{rule.identifier}", kind, target)
            hit = self.hits.get(key)
            fresh = [
                (pattern.identifier, m.offset)
                for pattern in rule.patterns
                for m in pattern.matches
                if m.offset + m.length > seen
            ]
            if hit is None:
                if not fresh and seen:
                    continue  # only matched inside the overlap: the previous piece has it
                meta = {str(k): str(v) for k, v in rule.metadata}
                hit = Hit(rule.identifier, rule.namespace, meta, kind, target, pid, readers=readers)
                self.hits[key] = hit
            for identifier, offset in fresh:
                hit.count += 1
                hit.patterns.add(identifier)
                if len(hit.offsets) < MAX_OFFSETS:
                    hit.offsets.append(base + offset)


def scan_pages(
    scanner: YaraScanner,
    stream: Readable,
    index: PageIndex,
    *,
    kind: str,
    target: str,
    pid: int | None,
) -> None:
    """Scan every run of one pages file (read sequentially, one scan per run or piece)."""
    for piece in iter_runs(stream, index):
        scanner.scan(
            piece.data, kind=kind, target=target, base=piece.vaddr, pid=pid, seen=piece.seen
        )


def _severity(meta: dict[str, str]) -> Severity:
    return as_severity(meta.get("severity", "").lower()) or "high"


def hits_to_findings(
    hits: Iterable[Hit], maps: dict[int, list[tuple[int, int, str]]]
) -> list[Finding]:
    """One finding per (rule, target); memory hits name the mapping of the first match."""
    out = []
    for hit in hits:
        first = hit.offsets[0] if hit.offsets else None
        mapping = _mapping(maps.get(hit.pid or -1, []), first) if hit.kind == "memory" else None
        details = {
            "rule": f"{hit.namespace}.{hit.rule}",
            "author": hit.meta.get("author", "unknown"),
            "target": f"{hit.kind} {hit.target}",
            "matches": str(hit.count),
            "patterns": ", ".join(sorted(hit.patterns)),
        }
        for key in ("description", "reference", "license", "threat_name"):
            if key in hit.meta:
                details[key] = hit.meta[key][:300]
        if hit.offsets:
            fmt = "0x{:x}" if hit.kind in ("memory", "shared-memory") else "{}"
            details["offsets"] = ", ".join(fmt.format(o) for o in hit.offsets)
        if hit.readers:
            details["shared_with"] = _readers(hit.readers)
        pids = sorted(set(hit.readers) | ({hit.pid} if hit.pid is not None else set()))
        out.append(
            Finding(
                id=f"yara:{hit.namespace}.{hit.rule}:{hit.kind}:{hit.target}",
                rule="yara",
                severity=_severity(hit.meta),
                title=f"YARA rule {hit.rule} matched ({hit.kind})",
                source=f"YARA rule {hit.namespace}.{hit.rule} by {details['author']} (user rules)",
                attack=[],
                evidence=Evidence(
                    pid=hit.pid,
                    pids=pids,
                    address=f"0x{first:x}" if first is not None and hit.kind == "memory" else None,
                    mapping=mapping,
                    path=hit.target if hit.kind not in ("memory",) else None,
                    details=details,
                ),
            )
        )
    return out


def _readers(pids: Iterable[int]) -> str:
    return "pids " + ", ".join(map(str, pids)) + " map or hold this object: each can read it"


def _mapping(vmas: list[tuple[int, int, str]], address: int | None) -> str | None:
    if address is None or not vmas:
        return None
    i = bisect.bisect_right([v[0] for v in vmas], address) - 1
    if i >= 0 and address < vmas[i][1]:
        return vmas[i][2]
    return None
