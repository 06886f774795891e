"""The findings step of an analysis: called by the analyzer before the report is redacted."""

from __future__ import annotations

import json
from typing import Any

from forensic_checkpoint.analysis.archive import ArchiveContents
from forensic_checkpoint.analysis.findings.credentials import find_credentials
from forensic_checkpoint.analysis.findings.engine import (
    RuleSet,
    default_rules,
    evaluate,
    sort_findings,
    subjects,
)
from forensic_checkpoint.analysis.findings.facts import Inputs
from forensic_checkpoint.analysis.findings.model import Finding
from forensic_checkpoint.analysis.findings.sources import read_rootfs_files
from forensic_checkpoint.analysis.report import Report


def _spec(contents: ArchiveContents) -> dict[str, Any]:
    try:
        spec = json.loads(contents.data.get("spec.dump") or b"{}")
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}


def find_all(
    report: Report,
    images: dict[str, bytes],
    rootfs_files: dict[str, bytes],
    spec: dict[str, Any],
    ruleset: RuleSet | None = None,
) -> list[Finding]:
    """Rules + credential inventory over one (unredacted) report; pure, for tests too."""
    rules = ruleset or default_rules()
    inputs = Inputs(report=report, images=images, rootfs_files=rootfs_files, spec=spec)
    found = evaluate(rules, subjects(inputs, rules.lists))
    found += find_credentials(report, rootfs_files, rules.credentials)
    return sort_findings(found)


def add_findings(report: Report, contents: ArchiveContents) -> None:
    """Fill ``report.findings`` (the report must not be redacted yet)."""
    rootfs = read_rootfs_files(contents)
    for path in rootfs.skipped[:20]:
        report.warnings.append(f"findings: rootfs-diff file {path} is too large to inspect")
    report.findings = find_all(report, contents.data, rootfs.files, _spec(contents))
