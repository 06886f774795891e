"""JSON: the camelCase contract, pretty-printed."""

from __future__ import annotations

import json

from forensic_checkpoint.analysis.model.base import Record


def render(report: Record) -> str:
    return json.dumps(report.to_json_dict(), indent=2) + "\n"
