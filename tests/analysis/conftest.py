"""Fixtures for analyzer tests (helpers live in sample_data.py, importable by name)."""

from __future__ import annotations

import pytest
from tests.analysis.sample_data import SAMPLES


@pytest.fixture(params=SAMPLES)
def sample(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name
