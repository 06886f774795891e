"""The committed real samples, their ground truth, and cached reports of them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.analysis.model.report import Report

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLES = sorted(p.name.removesuffix(".tar.zst") for p in DATA.glob("*.tar.zst"))


def sample_path(name: str) -> Path:
    return DATA / f"{name}.tar.zst"


@cache
def truth(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.truth.json").read_text())
    return data


@cache
def revealed(name: str) -> Report:
    """The sample analysed with every memory string of its truth file as a literal search."""
    searches = [m["value"] for m in truth(name)["memory_strings"]]
    return analyze(sample_path(name), AnalyzerOptions(searches=searches, reveal=True))
