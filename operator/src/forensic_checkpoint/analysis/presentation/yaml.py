"""YAML: the same camelCase document as JSON, in YAML block style."""

from __future__ import annotations

import yaml

from forensic_checkpoint.analysis.model.base import ReportModel


def render(report: ReportModel) -> str:
    data = report.to_json_dict()
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
