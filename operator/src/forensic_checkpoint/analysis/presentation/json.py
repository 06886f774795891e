"""JSON: the camelCase contract, pretty-printed."""

from __future__ import annotations

import json

from forensic_checkpoint.analysis.model.base import ReportModel


def render(report: ReportModel) -> str:
    return json.dumps(report.to_json_dict(), indent=2) + "\n"
