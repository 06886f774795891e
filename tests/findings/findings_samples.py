"""The committed real samples, analysed once per test session."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.analysis.model.report import Report

DATA = Path(__file__).resolve().parent.parent / "data"
BENIGN = sorted(
    p.name.removesuffix(".tar.zst")
    for p in DATA.glob("*.tar.zst")
    if not p.name.startswith("attack-")
)
ATTACKS = sorted(p.name.removesuffix(".tar.zst") for p in DATA.glob("attack-*.tar.zst"))


@cache
def analysed(name: str) -> Report:
    return analyze(DATA / f"{name}.tar.zst", AnalyzerOptions())


@cache
def truth(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.truth.json").read_text())
    return data
