"""Scoring the analyzer's findings against the corpus's ground truth (pure; the benchmark
``benchmarks/findings_corpus.py`` prints it, the tests check it).

* A finding **matches** an expectation when its rule is one of the expectation's, its evidence
  names the expected pid (``pid`` or among ``pids``), and, where the truth has them, its
  evidence path is the expected path and its socket's peer the expected remote.
* Per rule: a **true positive** is an expectation found (credited to the rule that found it); a
  **false negative** an expectation not found (charged to its first rule); a **false
  positive** a finding above ``info`` that matches no expectation and is not one of the
  scenario's allowed side effects.
* Goals (the issue's): no finding above ``low`` on a benign archive; every expectation of an
  attack found; ``Suspicious`` (a high or critical finding, as the operator decides it) on every
  attack archive and on no benign one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from forensic_checkpoint.analysis.model.findings import SEVERITY_RANK
from forensic_checkpoint.domain.capture.suspicion import ALARMING

Finding = dict[str, Any]
#: findings of one rule listed per archive (the rest are counted)
SHOWN_PER_RULE = 3


def _normal(path: str | None) -> str | None:
    if path is None:
        return None
    path = path.removesuffix(" (deleted)")
    return path[1:] if path.startswith("/memfd:") else path


def matches(finding: Finding, expected: dict[str, Any]) -> bool:
    if finding.get("rule") not in expected["rules"]:
        return False
    evidence = finding.get("evidence") or {}
    if expected["pid"] != evidence.get("pid") and expected["pid"] not in (
        evidence.get("pids") or []
    ):
        return False
    if "path" in expected and _normal(evidence.get("path")) != expected["path"]:
        return False
    if "remote" in expected:
        peer = (evidence.get("socket") or "").partition("->")[2].split()
        if not peer or peer[0] != expected["remote"]:
            return False
    return True


def above(finding: Finding, severity: str) -> bool:
    return SEVERITY_RANK.get(str(finding.get("severity")), 0) > SEVERITY_RANK[severity]


@dataclass
class ArchiveScore:
    name: str
    kind: str
    findings: list[Finding]
    found: list[dict[str, Any]] = field(default_factory=list)
    missed: list[dict[str, Any]] = field(default_factory=list)
    #: (rule credited, finding) per expectation found
    credited: list[str] = field(default_factory=list)
    false_positives: list[Finding] = field(default_factory=list)
    allowed: list[Finding] = field(default_factory=list)

    @property
    def suspicious(self) -> bool:
        return any(f.get("severity") in ALARMING for f in self.findings)

    def goal_failures(self) -> list[str]:
        problems = []
        if self.kind == "benign":
            for group in _by_rule([f for f in self.findings if above(f, "low")]):
                more = f"{len(group)} x {group[0]['rule']}, e.g. " if len(group) > 1 else ""
                problems.append(f"{self.name}: benign, {more}{_brief(group[0])}")
            if self.suspicious:
                problems.append(f"{self.name}: benign archive is Suspicious")
        else:
            problems += [
                f"{self.name}: missed {'|'.join(e['rules'])} on pid {e['pid']}"
                + (f" path {e['path']}" if "path" in e else "")
                + (f" remote {e['remote']}" if "remote" in e else "")
                for e in self.missed
            ]
            if not self.suspicious:
                problems.append(f"{self.name}: attack archive is not Suspicious")
        return problems


def _by_rule(findings: list[Finding]) -> list[list[Finding]]:
    groups: dict[str, list[Finding]] = {}
    for f in findings:
        groups.setdefault(str(f.get("rule")), []).append(f)
    return list(groups.values())


def _brief(f: Finding) -> str:
    ev = f.get("evidence") or {}
    where = ev.get("path") or ev.get("socket") or ev.get("mapping") or ""
    return f"{f.get('severity')} {f.get('rule')} pid {ev.get('pid')} {where}".rstrip()


def score_archive(truth: dict[str, Any], findings: list[Finding]) -> ArchiveScore:
    score = ArchiveScore(truth["scenario"], truth["kind"], findings)
    matched: set[int] = set()
    for expected in truth["expected"]:
        hits = [i for i, f in enumerate(findings) if matches(f, expected)]
        if hits:
            score.found.append(expected)
            score.credited.append(str(findings[hits[0]]["rule"]))
            matched.update(hits)
        else:
            score.missed.append(expected)
    allowed = set(truth.get("allowed") or []) if truth["kind"] == "attack" else set()
    for i, f in enumerate(findings):
        if i in matched or not above(f, "info"):
            continue
        (score.allowed if f.get("rule") in allowed else score.false_positives).append(f)
    return score


@dataclass
class RuleCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


def per_rule(scores: list[ArchiveScore]) -> dict[str, RuleCounts]:
    counts: dict[str, RuleCounts] = defaultdict(RuleCounts)
    for s in scores:
        for rule in s.credited:
            counts[rule].tp += 1
        for expected in s.missed:
            counts[expected["rules"][0]].fn += 1
        for f in s.false_positives:
            counts[str(f["rule"])].fp += 1
    return dict(sorted(counts.items()))


def goal_failures(scores: list[ArchiveScore]) -> list[str]:
    return [problem for s in scores for problem in s.goal_failures()]


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(scores: list[ArchiveScore]) -> str:
    """The per-rule table, then each archive's findings above info, then the goals."""
    lines = [f"{'rule':30} {'TP':>3} {'FP':>3} {'FN':>3} {'precision':>9} {'recall':>6}"]
    total = RuleCounts()
    for rule, c in per_rule(scores).items():
        total.tp, total.fp, total.fn = total.tp + c.tp, total.fp + c.fp, total.fn + c.fn
        lines.append(
            f"{rule:30} {c.tp:>3} {c.fp:>3} {c.fn:>3} {_ratio(c.precision):>9} "
            f"{_ratio(c.recall):>6}"
        )
    lines.append(
        f"{'all rules':30} {total.tp:>3} {total.fp:>3} {total.fn:>3} "
        f"{_ratio(total.precision):>9} {_ratio(total.recall):>6}"
    )
    lines.append("")
    for s in scores:
        verdict = "Suspicious" if s.suspicious else "not suspicious"
        lines.append(
            f"{s.kind:7} {s.name:26} {verdict:15} found {len(s.found)}/"
            f"{len(s.found) + len(s.missed)}, {len(s.false_positives)} false positive(s)"
        )
        for group in _by_rule([f for f in s.findings if above(f, "info")]):
            for f in group[:SHOWN_PER_RULE]:
                mark = "FP" if f in s.false_positives else "ok" if f not in s.allowed else "side"
                lines.append(f"    {mark:4} {_brief(f)}")
            if len(group) > SHOWN_PER_RULE:
                lines.append(
                    f"         ... and {len(group) - SHOWN_PER_RULE} more {group[0]['rule']}"
                )
        for e in s.missed:
            lines.append(f"    MISS {'|'.join(e['rules'])} pid {e['pid']} ({e['process'][:60]})")
    failures = goal_failures(scores)
    lines.append("")
    lines.append("goals: all met" if not failures else f"goals: {len(failures)} failure(s)")
    lines += [f"  FAIL {f}" for f in failures]
    return "\n".join(lines)
