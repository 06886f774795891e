"""Renderers of the one report model: text (rich tables), JSON and YAML.

Each renderer module exposes ``render(report) -> str``; ``render_report`` picks one lazily so
that JSON output never imports rich and text output never imports yaml.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.model.base import ReportModel
    from forensic_checkpoint.analysis.presentation.style import TextStyle

FORMATS = ("text", "json", "yaml")


def render_report(report: ReportModel, fmt: str, style: TextStyle | None = None) -> str:
    """Render a Report or a DiffReport in ``fmt`` (one of FORMATS); ``style`` (width, colour)
    applies to text only, plain and 140 columns wide by default."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    module = importlib.import_module(f"forensic_checkpoint.analysis.presentation.{fmt}")
    text: str = module.render(report, style) if fmt == "text" and style else module.render(report)
    return text
