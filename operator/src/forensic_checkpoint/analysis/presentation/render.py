"""Renderers of the one report model: text (rich tables), JSON and YAML.

Each renderer module exposes ``render(report) -> str``; ``render_report`` picks one lazily so
that JSON output never imports rich and text output never imports yaml.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.model.base import ReportModel

FORMATS = ("text", "json", "yaml")


def render_report(report: ReportModel, fmt: str) -> str:
    """Render a Report or a DiffReport in ``fmt`` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    module = importlib.import_module(f"forensic_checkpoint.analysis.presentation.{fmt}")
    text: str = module.render(report)
    return text
