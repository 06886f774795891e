"""Helpers for the alert tests: captured payloads, policy builders, a hand-moved clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forensic_checkpoint.api.policy import ForensicCapturePolicy

DATA = Path(__file__).parent / "data"


def payload(name: str) -> dict[str, Any]:
    """A payload captured from the real sender (see data/README.md)."""
    result: dict[str, Any] = json.loads((DATA / name).read_text())
    return result


def policy(name: str = "default", **spec: Any) -> ForensicCapturePolicy:
    return ForensicCapturePolicy.model_validate({"metadata": {"name": name}, "spec": spec})


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
