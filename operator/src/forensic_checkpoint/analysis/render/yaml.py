"""YAML: the same camelCase document as JSON, in YAML block style."""

from __future__ import annotations

import yaml
from pydantic import BaseModel


def render(report: BaseModel) -> str:
    data = report.model_dump(mode="json", by_alias=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
