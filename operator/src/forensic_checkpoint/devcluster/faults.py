"""What a fake kubelet should do instead of (or before) a clean checkpoint.

Two sources, both parsed here so the rules live in one place:

* the pod annotation ``fake-kubelet.forensic-checkpoint.dev/fault``, one of
  ``latency=<N>s`` (may be followed by ``;`` and one more fault), ``hang``, ``gate-off``,
  ``reset``, ``error=<CRI error text>`` (everything after ``error=`` is the text, verbatim);
* the per-node settings (:class:`NodeSettings`), changed at run time through the fake
  kubelet's ``PUT /_fake/config``.

An ``error=`` text that is not already a gRPC status string is wrapped the way both CRI
runtimes report checkpoint failures (``rpc error: code = Unknown desc = <text>``), so tests can
pass the runtime's message from the capture-failure reference as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from forensic_checkpoint.errors import ConfigError

FAULT_ANNOTATION = "fake-kubelet.forensic-checkpoint.dev/fault"
ARCHIVE_ANNOTATION = "fake-kubelet.forensic-checkpoint.dev/archive"

#: The CRI runtime status the kubelet wraps when its call runs out of time (there is no 408).
DEADLINE_EXCEEDED = "rpc error: code = DeadlineExceeded desc = context deadline exceeded"

_LATENCY = re.compile(r"^latency=(\d+(?:\.\d+)?)(ms|s)?$")


@dataclass(frozen=True)
class Fault:
    latency: float = 0.0  #: seconds to wait before answering (counts against ?timeout=)
    hang: bool = False  #: never finish: answer DeadlineExceeded when the timeout runs out
    gate_off: bool = False  #: behave as if the ContainerCheckpoint feature gate were off
    reset: bool = False  #: drop the connection with a TCP reset, no HTTP answer
    error: str | None = None  #: the CRI error text for a 500


def cri_error(text: str) -> str:
    return text if text.startswith("rpc error:") else f"rpc error: code = Unknown desc = {text}"


def parse_fault(value: str | None) -> Fault:
    """Parse the fault annotation; raises ``ConfigError`` naming the bad value."""
    if not value or not value.strip():
        return Fault()
    rest = value.strip()
    latency = 0.0
    match = _LATENCY.match(rest.split(";", 1)[0].strip())
    if match:
        latency = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
        rest = rest.split(";", 1)[1].strip() if ";" in rest else ""
    if not rest:
        return Fault(latency=latency)
    if rest.startswith("error="):
        text = rest.removeprefix("error=")
        if not text:
            raise ConfigError(f"{FAULT_ANNOTATION}: error= needs a text")
        return Fault(latency=latency, error=cri_error(text))
    if rest == "hang":
        return Fault(latency=latency, hang=True)
    if rest == "gate-off":
        return Fault(latency=latency, gate_off=True)
    if rest == "reset":
        return Fault(latency=latency, reset=True)
    raise ConfigError(
        f"{FAULT_ANNOTATION}: unknown fault {value!r} "
        "(latency=Ns[;...], hang, gate-off, reset, error=<text>)"
    )


@dataclass
class NodeSettings:
    """Per-node behaviour a test can change while the fake kubelet runs."""

    checkpoint_gate: bool = True  #: False: every /checkpoint/ path is "404 page not found"
    runtime_version: str = "cri-o://1.26.4"  #: node status nodeInfo.containerRuntimeVersion
    fail_with: str | None = None  #: a CRI error text every checkpoint fails with (500)

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpointGate": self.checkpoint_gate,
            "runtimeVersion": self.runtime_version,
            "failWith": self.fail_with,
        }

    def update(self, patch: dict[str, Any]) -> None:
        """Apply a JSON merge of :meth:`to_json`'s fields; unknown keys are an error."""
        unknown = set(patch) - {"checkpointGate", "runtimeVersion", "failWith"}
        if unknown:
            raise ConfigError(f"unknown node settings: {', '.join(sorted(unknown))}")
        if "checkpointGate" in patch:
            if not isinstance(patch["checkpointGate"], bool):
                raise ConfigError("checkpointGate must be a boolean")
            self.checkpoint_gate = patch["checkpointGate"]
        if "runtimeVersion" in patch:
            if not isinstance(patch["runtimeVersion"], str) or "://" not in patch["runtimeVersion"]:
                raise ConfigError("runtimeVersion must look like '<runtime>://<version>'")
            self.runtime_version = patch["runtimeVersion"]
        if "failWith" in patch:
            value = patch["failWith"]
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError("failWith must be a non-empty string or null")
            self.fail_with = cri_error(value) if value else None
