"""A report that leaves the analyzer without ``reveal`` masks every environment value: those the
processes held in memory and those of the container's OCI spec (``config.json``'s
``process.env``, where Kubernetes puts a Secret's ``env`` entries)."""

from __future__ import annotations

import pytest
from tests.analysis.sample_data import SAMPLES, revealed

from forensic_checkpoint.analysis.commands.redact import redact
from forensic_checkpoint.analysis.model.report import REDACTED


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_spec_and_process_env_value_is_masked(sample: str) -> None:
    shown = revealed(sample)
    spec_values = [e.value for e in shown.container.spec_env if e.value]
    assert spec_values, "the sample's spec has no environment: the test would prove nothing"
    masked = redact(shown)
    assert masked.redacted
    assert {e.name for e in masked.container.spec_env} == {e.name for e in shown.container.spec_env}
    assert all(e.value in (REDACTED, "") for e in masked.container.spec_env)
    for proc in masked.processes:
        assert all(e.value in (REDACTED, "") for e in proc.env), proc.pid
    assert shown.container.spec_env[0].value != REDACTED  # redact copies; the input stays whole
