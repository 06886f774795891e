"""The facts the agent gathers about its node in one probe round (see :mod:`.checks`).

The probe call is the strongest fact: the kubelet authenticates and authorises it exactly like a
real checkpoint (``create nodes/checkpoint``), and its 404 body tells the feature gate apart:
``404 page not found`` means the route is not installed, ``pod does not exist`` means the handler
ran (kubelet ``server.go``).
"""

from __future__ import annotations

from dataclasses import dataclass

from forensic_checkpoint.domain.failures.classify import CaptureFailure
from forensic_checkpoint.domain.failures.model import TransportFailure

#: The probe's target: a namespace and pod that no workload uses, so a kubelet with the gate on
#: answers "pod does not exist" and never starts a checkpoint.
PROBE_NAMESPACE = "forensic-checkpoint-readiness"
PROBE_POD = "readiness-probe-no-such-pod-7f3c"
PROBE_CONTAINER = "probe"
PROBE_PATH = f"/checkpoint/{PROBE_NAMESPACE}/{PROBE_POD}/{PROBE_CONTAINER}"


@dataclass(frozen=True, slots=True)
class KubeletProbe:
    """The kubelet's answer to ``POST PROBE_PATH``; ``transport`` when there was none."""

    status_code: int | None
    body: str = ""
    transport: TransportFailure | None = None
    #: False when the agent skipped certificate verification (no CA given).
    tls_verified: bool = True


@dataclass(frozen=True, slots=True)
class AccessReview:
    """A SelfSubjectAccessReview for ``create nodes/checkpoint`` on this node."""

    allowed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CriuConfigObservation:
    """What the agent's CRIU configuration writer found (``agent.readiness.criu_config`` result)."""

    #: Absent, Managed, Foreign, Conflict, Error, or Unavailable (host path not mounted).
    state: str
    tcp_established: bool = False
    ghost_limit_bytes: int = 1 << 20
    message: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeProbe:
    """Everything the agent learnt about its node in one probe round."""

    #: ``status.nodeInfo.containerRuntimeVersion``, e.g. ``containerd://2.0.0``.
    container_runtime_version: str | None = None
    #: ``status.nodeInfo.kubeletVersion``, e.g. ``v1.31.2``.
    kubelet_version: str | None = None
    kubelet: KubeletProbe | None = None
    access_review: AccessReview | None = None
    criu_config: CriuConfigObservation | None = None
    #: Only when the canary setting (off by default) is on: how the canary capture went.
    canary: CanaryOutcome | None = None


@dataclass(frozen=True, slots=True)
class CanaryOutcome:
    """A real capture of a tiny container on the node; ``failure`` from the classifier."""

    succeeded: bool
    failure: CaptureFailure | None = None
