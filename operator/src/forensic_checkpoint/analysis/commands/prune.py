"""``analyze --pid``: keep one process subtree, like ``checkpointctl inspect --pid``.

Pruning happens on the finished report, so findings that need the whole tree (a shell below
a server) are still found; only what is shown is narrowed to the subtree.
"""

from __future__ import annotations

from forensic_checkpoint.analysis.model.findings import Finding
from forensic_checkpoint.analysis.model.report import Report
from forensic_checkpoint.errors import ConfigError


def subtree(report: Report, root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in report.processes:
        children.setdefault(p.ppid, []).append(p.pid)
    if report.process(root) is None:
        raise ConfigError(f"--pid {root}: no such process in this checkpoint")
    keep, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in keep:
            keep.add(pid)
            todo.extend(children.get(pid, []))
    return keep


def prune_to_subtree(report: Report, root: int) -> Report:
    """The report narrowed to ``root`` and its descendants (processes, sockets, pipes,
    shared memory users, memory matches, findings about them)."""
    keep = subtree(report, root)
    report.processes = [p for p in report.processes if p.pid in keep]
    report.sockets = [s for s in report.sockets if any(h.pid in keep for h in s.held_by)]
    report.pipes = [p for p in report.pipes if any(h.pid in keep for h in p.held_by)]
    report.shared_memory = [
        o for o in report.shared_memory if any(int(u.split()[0]) in keep for u in o.used_by)
    ]
    _prune_searches(report, keep)
    report.findings = [f for f in report.findings if _about(f, keep)]
    return report


def _prune_searches(report: Report, keep: set[int]) -> None:
    for search in report.memory.searches:
        search.matches = [m for m in search.matches if m.pid in keep]
        search.total_matches = len(search.matches) if not search.truncated else search.total_matches


def _about(finding: Finding, keep: set[int]) -> bool:
    """True for a finding about a kept process, or about no process at all."""
    e = finding.evidence
    return (e.pid is None and not e.pids) or e.pid in keep or bool(keep.intersection(e.pids))
