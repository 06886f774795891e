"""Fixtures for the alert tests."""

from __future__ import annotations

import pytest
from tests.alerts.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
