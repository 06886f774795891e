"""JSON: the camelCase contract, pretty-printed."""

from __future__ import annotations

import json

from pydantic import BaseModel


def render(report: BaseModel) -> str:
    return json.dumps(report.model_dump(mode="json", by_alias=True), indent=2) + "\n"
