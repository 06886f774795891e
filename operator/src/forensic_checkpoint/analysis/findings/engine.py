"""Evaluate the data rules (rules.yaml) over the subjects of one checkpoint."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from forensic_checkpoint.analysis.findings.credentials import mask_secrets
from forensic_checkpoint.analysis.findings.facts import (
    Inputs,
    Subject,
    container_subjects,
    env_subjects,
    file_subjects,
    log_subjects,
    mapping_subjects,
    mount_subjects,
)
from forensic_checkpoint.analysis.findings.process_facts import process_subjects
from forensic_checkpoint.analysis.model.base import field_names
from forensic_checkpoint.analysis.model.findings import (
    SEVERITY_RANK,
    Evidence,
    Finding,
    Severity,
    as_severity,
)
from forensic_checkpoint.errors import ConfigError

SUBJECT_KINDS = ("process", "env", "file", "mapping", "mount", "container", "logline")
_EVIDENCE_FIELDS = field_names(Evidence) - {"details"}
#: subjects named in a grouped or aggregated finding's ``sample``
SAMPLE = 10


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: Severity
    subject: str
    source: str
    when: Mapping[str, Any]
    attack: tuple[str, ...] = ()
    unless_rules: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    #: every subject the rule matches is one finding, with a count and a sample
    aggregate: bool = False
    #: subjects that match one of these ``when`` mappings are not findings (``reason`` says why)
    exempt: tuple[Mapping[str, Any], ...] = ()
    evidence: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleSet:
    lists: Mapping[str, list[str]]
    rules: tuple[Rule, ...]
    #: the credential inventory's detectors (credentials.py)
    credentials: Mapping[str, Any] = field(default_factory=dict)


def parse_rules(text: str) -> RuleSet:
    """Parse and check a rules document (YAML); mistakes are ConfigErrors naming the rule."""
    return rules_from_document(load_rules_yaml(text))


def load_rules_yaml(text: str) -> dict[str, Any]:
    import yaml  # ~12 ms: only for rule files, not for the bundled rules (rules.json)

    # The C loader parses the same safe subset ~8x faster; fall back where libyaml is absent.
    doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}  # noqa: S506
    if not isinstance(doc, dict):
        raise ConfigError("a rules document is a mapping with lists, rules and credentials")
    return doc


def rules_json(yaml_text: str) -> str:
    """``rules.yaml`` as the ``rules.json`` shipped beside it (``make rules``; a test checks
    that the two agree). The analyzer loads the JSON: no YAML parser on every run."""
    doc = {"_comment": "Generated from rules.yaml by `make rules`: edit that file, not this one."}
    doc.update(load_rules_yaml(yaml_text))
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def rules_from_document(doc: Mapping[str, Any]) -> RuleSet:
    """Check a parsed rules document and build its RuleSet."""
    lists = {str(k): [str(x) for x in v] for k, v in (doc.get("lists") or {}).items()}
    rules = []
    seen: set[str] = set()
    for raw in doc.get("rules") or []:
        rule = _rule(raw)
        _check(rule, lists, seen)
        seen.add(rule.id)
        rules.append(rule)
    credentials = dict(doc.get("credentials") or {})
    for det in [credentials.get("env_name") or {}, *(credentials.get("detectors") or [])]:
        if as_severity(severity := det.get("severity")) is None:
            raise ConfigError(f"credential {det.get('id', '?')}: unknown severity {severity!r}")
    return RuleSet(lists=lists, rules=tuple(rules), credentials=credentials)


def _rule(raw: Mapping[str, Any]) -> Rule:
    rid = str(raw.get("id", "?"))
    severity = as_severity(raw.get("severity"))
    if severity is None:
        raise ConfigError(f"rule {rid}: unknown severity {raw.get('severity')!r}")
    try:
        return Rule(
            id=rid,
            title=str(raw["title"]),
            severity=severity,
            subject=str(raw["subject"]),
            source=str(raw["source"]),
            when=dict(raw["when"]),
            attack=tuple(raw.get("attack") or ()),
            unless_rules=tuple(raw.get("unless_rules") or ()),
            group_by=tuple(raw.get("group_by") or ()),
            aggregate=bool(raw.get("aggregate", False)),
            exempt=tuple(dict(e) for e in raw.get("exempt") or ()),
            evidence=dict(raw.get("evidence") or {}),
            details=dict(raw.get("details") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"rule {rid}: missing or malformed field {exc}") from exc


def _check(rule: Rule, lists: Mapping[str, list[str]], seen: set[str]) -> None:
    if rule.id in seen:
        raise ConfigError(f"rule {rule.id}: duplicate id")
    if rule.subject not in SUBJECT_KINDS:
        raise ConfigError(f"rule {rule.id}: unknown subject {rule.subject!r}")
    unknown = set(rule.evidence) - _EVIDENCE_FIELDS
    if unknown:
        raise ConfigError(f"rule {rule.id}: unknown evidence fields {sorted(unknown)}")
    for exemption in rule.exempt:
        if not str(exemption.get("reason") or "").strip() or not exemption.get("when"):
            raise ConfigError(f"rule {rule.id}: an exemption needs `when` and its `reason`")
    conditions = [*rule.when.values(), *(c for e in rule.exempt for c in e["when"].values())]
    for cond in conditions:
        if isinstance(cond, dict):
            bad = set(cond) - set(_TESTS) - {"present"}
            if bad:
                raise ConfigError(f"rule {rule.id}: unknown operators {sorted(bad)}")
            for op in ("in", "not_in", "glob", "not_glob", "any_in"):
                arg = cond.get(op)
                if isinstance(arg, str) and arg not in lists:
                    raise ConfigError(f"rule {rule.id}: unknown list {arg!r}")


@cache
def default_rules() -> RuleSet:
    """The bundled rules: rules.yaml, as the rules.json generated from it."""
    text = resources.files(__package__).joinpath("rules.json").read_text(encoding="utf-8")
    return rules_from_document(json.loads(text))


def _list(arg: Any, lists: Mapping[str, list[str]]) -> list[str]:
    if isinstance(arg, str):
        return lists[arg]
    return [str(x) for x in arg]


def _globs(value: Any, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(str(value), g) for g in patterns)


#: operator -> test(value, resolved argument); value is never None here
_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "in": lambda v, a: str(v) in a,
    "not_in": lambda v, a: str(v) not in a,
    "glob": _globs,
    "not_glob": lambda v, a: not _globs(v, a),
    "regex": lambda v, a: re.search(str(a), str(v)) is not None,
    "gt": lambda v, a: isinstance(v, int | float) and v > a,
    "any_in": lambda v, a: bool(set(map(str, v)) & set(a)),
}
_LIST_OPS = {"in", "not_in", "glob", "not_glob", "any_in"}


def _test(value: Any, cond: Any, lists: Mapping[str, list[str]]) -> bool:
    if not isinstance(cond, dict):
        return bool(value == cond)
    for op, arg in cond.items():
        if op == "present":
            if (value not in (None, "", [])) != bool(arg):
                return False
            continue
        if value is None:
            return False
        if not _TESTS[op](value, _list(arg, lists) if op in _LIST_OPS else arg):
            return False
    return True


def _holds(when: Mapping[str, Any], subject: Subject, lists: Mapping[str, list[str]]) -> bool:
    return all(_test(subject.get(name), cond, lists) for name, cond in when.items())


def matches(rule: Rule, subject: Subject, lists: Mapping[str, list[str]]) -> bool:
    return (
        subject.get("_kind") == rule.subject
        and _holds(rule.when, subject, lists)
        and not any(_holds(e["when"], subject, lists) for e in rule.exempt)
    )


def subjects(inputs: Inputs, lists: Mapping[str, list[str]]) -> list[Subject]:
    return [
        *process_subjects(inputs, lists),
        *env_subjects(inputs),
        *file_subjects(inputs),
        *mapping_subjects(inputs),
        *mount_subjects(inputs),
        *container_subjects(inputs, lists),
        *log_subjects(inputs),
    ]


def evaluate(ruleset: RuleSet, items: Sequence[Subject]) -> list[Finding]:
    """Every rule over every subject; ``unless_rules`` and ``group_by`` applied."""
    hits: dict[str, set[str]] = {}  # subject key -> rules that matched it
    matched: list[tuple[Rule, Subject]] = []
    for rule in ruleset.rules:
        for subject in items:
            if matches(rule, subject, ruleset.lists):
                hits.setdefault(f"{subject['_kind']}:{subject['_key']}", set()).add(rule.id)
                matched.append((rule, subject))
    groups: dict[tuple[str, str], list[tuple[Rule, Subject]]] = {}
    for rule, subject in matched:
        if set(rule.unless_rules) & hits[f"{subject['_kind']}:{subject['_key']}"]:
            continue
        if rule.aggregate:
            key = "all"
        elif rule.group_by:
            key = ",".join(f"{g}={subject.get(g)}" for g in rule.group_by)
        else:
            key = subject["_key"]
        groups.setdefault((rule.id, key), []).append((rule, subject))
    detectors = list(ruleset.credentials.get("detectors") or [])
    return [_finding(key, members, detectors) for (_, key), members in groups.items()]


def _finding(
    key: str, members: list[tuple[Rule, Subject]], detectors: list[Mapping[str, Any]]
) -> Finding:
    rule, first = members[0]
    values: dict[str, Any] = {}
    for name, fact in rule.evidence.items():
        if name in ("pids", "fd"):
            merged: set[int] = set()
            for _, s in members:
                v = s.get(fact)
                merged |= set(v) if isinstance(v, list) else ({v} if v is not None else set())
            values[name] = sorted(merged)
        else:
            values[name] = first.get(fact)
    details = {
        label: mask_secrets(str(first[fact]), detectors)
        for label, fact in rule.details.items()
        if first.get(fact) is not None
    }
    if len(members) > 1:  # what the one finding stands for
        names = sorted({str(s.get("path") or s["_key"]) for _, s in members})
        details["count"] = str(len(members))
        details["sample"] = mask_secrets(", ".join(names[:SAMPLE]), detectors) + (
            f", ... ({len(names) - SAMPLE} more)" if len(names) > SAMPLE else ""
        )
    return Finding(
        id=f"{rule.id}:{key}",
        rule=rule.id,
        severity=rule.severity,
        title=rule.title,
        source=rule.source,
        attack=list(rule.attack),
        evidence=Evidence(**values, details=details),
    )


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-SEVERITY_RANK[f.severity], f.rule, f.id))
