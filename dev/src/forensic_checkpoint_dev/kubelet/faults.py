"""What a fake kubelet should do instead of (or before) a clean checkpoint.

Two sources, both parsed here so the rules live in one place:

* the pod annotation ``fake-kubelet.forensic-checkpoint.dev/fault``, one of
  ``latency=<N>s`` (may be followed by ``;`` and one more fault), ``hang``, ``gate-off``,
  ``reset``, ``late-file``, ``error=<CRI error text>`` (everything after ``error=`` is the text,
  verbatim);
* the per-node settings (:class:`NodeSettings`), changed at run time through the fake
  kubelet's ``PUT /_fake/config``.

An ``error=`` text that is not already a gRPC status string is wrapped the way both CRI
runtimes report checkpoint failures (``rpc error: code = Unknown desc = <text>``), so tests can
pass the runtime's message from the capture-failure reference as is.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from forensic_checkpoint.errors import ConfigError

FAULT_ANNOTATION = "fake-kubelet.forensic-checkpoint.dev/fault"
ARCHIVE_ANNOTATION = "fake-kubelet.forensic-checkpoint.dev/archive"

#: The CRI runtime status the kubelet wraps when its call runs out of time (there is no 408).
DEADLINE_EXCEEDED = "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
#: The CRI status when the kubelet's caller went away: the call runs on the request's context.
CANCELED = "rpc error: code = Canceled desc = context canceled"
#: The kubelet's default ``runtimeRequestTimeout`` (2 min): never less for a checkpoint.
DEFAULT_RUNTIME_REQUEST_TIMEOUT = 120.0

_LATENCY = re.compile(r"^latency=(\d+(?:\.\d+)?)(ms|s)?$")


@dataclass(frozen=True)
class Fault:
    latency: float = 0.0  #: seconds the dump takes (counts against the kubelet's deadline)
    hang: bool = False  #: never finish: answer DeadlineExceeded when the deadline runs out
    gate_off: bool = False  #: behave as if the ContainerCheckpoint feature gate were off
    reset: bool = False  #: drop the connection with a TCP reset, no HTTP answer
    error: str | None = None  #: the CRI error text for a 500
    #: The rare late file: the runtime had already written the archive when the kubelet saw its
    #: caller disconnect, so the dump finishes and the archive lands although the call was
    #: cancelled (without it, a disconnect during the dump cancels it and writes nothing).
    late_file: bool = False


#: The faults without a value.
_FLAGS = {
    "hang": Fault(hang=True),
    "gate-off": Fault(gate_off=True),
    "reset": Fault(reset=True),
    "late-file": Fault(late_file=True),
}


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
    flag = _FLAGS.get(rest)
    if flag is not None:
        return dataclasses.replace(flag, latency=latency)
    raise ConfigError(
        f"{FAULT_ANNOTATION}: unknown fault {value!r} "
        "(latency=Ns[;...], hang, gate-off, reset, late-file, error=<text>)"
    )


@dataclass
class NodeSettings:
    """Per-node behaviour a test can change while the fake kubelet runs."""

    checkpoint_gate: bool = True  #: False: every /checkpoint/ path is "404 page not found"
    runtime_version: str = "containerd://2.3.4"  #: node status nodeInfo.containerRuntimeVersion
    fail_with: str | None = None  #: a CRI error text every checkpoint fails with (500)
    #: The kubelet's ``runtimeRequestTimeout`` in seconds. The CRI client raises a smaller
    #: ``?timeout=`` to it (k8s.io/cri-client ``CheckpointContainer``); tests lower it so
    #: that they need not wait 2 minutes.
    runtime_request_timeout: float = DEFAULT_RUNTIME_REQUEST_TIMEOUT

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpointGate": self.checkpoint_gate,
            "runtimeVersion": self.runtime_version,
            "failWith": self.fail_with,
            "runtimeRequestTimeout": self.runtime_request_timeout,
        }

    def deadline(self, timeout: int) -> float:
        """Seconds the kubelet gives the runtime for a checkpoint with ``?timeout=timeout``
        (0: none given): ``max(timeout, runtimeRequestTimeout)``."""
        return max(float(timeout), self.runtime_request_timeout)

    def update(self, patch: dict[str, Any]) -> None:
        """Apply a JSON merge of :meth:`to_json`'s fields; unknown keys are an error."""
        known = {"checkpointGate", "runtimeVersion", "failWith", "runtimeRequestTimeout"}
        unknown = set(patch) - known
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
        if "runtimeRequestTimeout" in patch:
            value = patch["runtimeRequestTimeout"]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError("runtimeRequestTimeout must be a positive number of seconds")
            self.runtime_request_timeout = float(value)
