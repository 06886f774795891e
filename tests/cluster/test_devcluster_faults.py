"""Parsing of the fake kubelet's fault annotation and node settings (no cluster needed)."""

from __future__ import annotations

import pytest

from forensic_checkpoint.errors import ConfigError
from forensic_checkpoint_dev.kubelet.faults import Fault, NodeSettings, parse_fault


@pytest.mark.parametrize(
    ("value", "fault"),
    [
        (None, Fault()),
        ("", Fault()),
        ("latency=3s", Fault(latency=3.0)),
        ("latency=250ms", Fault(latency=0.25)),
        ("latency=1.5", Fault(latency=1.5)),
        ("hang", Fault(hang=True)),
        ("gate-off", Fault(gate_off=True)),
        ("reset", Fault(reset=True)),
        ("latency=2s;reset", Fault(latency=2.0, reset=True)),
        ("latency=3s;late-file", Fault(latency=3.0, late_file=True)),
        (
            "error=checkpoint/restore support not available",
            Fault(
                error="rpc error: code = Unknown desc = checkpoint/restore support not available"
            ),
        ),
        # the text is verbatim, ';' and '=' included, and an rpc status is not wrapped twice
        (
            "latency=1s;error=rpc error: code = Unknown desc = a=b; c",
            Fault(latency=1.0, error="rpc error: code = Unknown desc = a=b; c"),
        ),
    ],
)
def test_parse_fault(value: str | None, fault: Fault) -> None:
    assert parse_fault(value) == fault


@pytest.mark.parametrize(
    "value", ["explode", "latency=fast", "error=", "hang;reset", "late-file;latency=1s"]
)
def test_parse_fault_rejects(value: str) -> None:
    with pytest.raises(ConfigError, match="fault"):
        parse_fault(value)


def test_node_settings_update() -> None:
    settings = NodeSettings()
    settings.update({"checkpointGate": False, "failWith": "criu failed"})
    assert settings.to_json() == {
        "checkpointGate": False,
        "runtimeVersion": "containerd://2.3.4",
        "failWith": "rpc error: code = Unknown desc = criu failed",
        "runtimeRequestTimeout": 120.0,
    }
    settings.update({"failWith": None, "runtimeVersion": "cri-o://1.26.4"})
    assert settings.fail_with is None and settings.runtime_version == "cri-o://1.26.4"
    bad_values: list[dict[str, object]] = [
        {"gate": True},
        {"checkpointGate": "no"},
        {"runtimeVersion": "2.3"},
        {"runtimeRequestTimeout": 0},
        {"runtimeRequestTimeout": "2m"},
        {"runtimeRequestTimeout": True},
    ]
    for bad in bad_values:
        with pytest.raises(ConfigError):
            settings.update(bad)


def test_the_kubelet_raises_a_short_timeout_to_its_runtime_request_timeout() -> None:
    """k8s.io/cri-client CheckpointContainer: "If the user requested a timeout less than the
    CRI default, let's use the CRI default" (real-node.md B1: ?timeout=1 answered 200 after
    12.5 s)."""
    settings = NodeSettings()
    assert settings.deadline(0) == settings.deadline(1) == settings.deadline(120) == 120.0
    assert settings.deadline(600) == 600.0
    settings.update({"runtimeRequestTimeout": 3})
    assert (settings.deadline(1), settings.deadline(5)) == (3.0, 5.0)
