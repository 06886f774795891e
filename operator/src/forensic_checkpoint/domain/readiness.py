"""Can this node take a forensic checkpoint right now? Pure evaluation of the agent's probes.

The agent gathers facts (the Node object's runtime and kubelet versions, one probe call to the
kubelet's checkpoint endpoint for a pod that cannot exist, a SelfSubjectAccessReview, the CRIU
configuration writer's result, optionally a canary capture) into a :class:`NodeProbe`;
:func:`evaluate` turns them into checks and the node's ``Ready`` condition. The operator reads
the result back from the ForensicNode with :func:`capture_blocker` to fail a capture at once,
with the node's reason, instead of waiting for the kubelet.

The probe call is the strongest evidence: the kubelet authenticates and authorises it exactly
like a real checkpoint (``create nodes/checkpoint``), and its 404 body tells the feature gate
apart: ``404 page not found`` means the route is not installed, ``pod does not exist`` means the
handler ran (kubelet ``server.go``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from forensic_checkpoint.api.conditions import READY, Condition, ConditionStatus
from forensic_checkpoint.api.forensicnode import CheckStatus, ForensicNode, ReadinessCheck
from forensic_checkpoint.domain.capture_failure_model import FailureReason, TransportFailure
from forensic_checkpoint.domain.capture_failures import CaptureFailure, classify_capture_failure
from forensic_checkpoint.domain.conditions import find_condition, set_condition

#: The probe's target: a namespace and pod that no workload uses, so a kubelet with the gate on
#: answers "pod does not exist" and never starts a checkpoint.
PROBE_NAMESPACE = "forensic-checkpoint-readiness"
PROBE_POD = "readiness-probe-no-such-pod-7f3c"
PROBE_CONTAINER = "probe"
PROBE_PATH = f"/checkpoint/{PROBE_NAMESPACE}/{PROBE_POD}/{PROBE_CONTAINER}"

# Minimum versions (Kubernetes research notes §1.7, §1.9).
MIN_CONTAINERD = (2, 0)
MIN_CRIO = (1, 25)
MIN_KUBELET = (1, 25)  # the ContainerCheckpoint gate exists from here (alpha, off)
KUBELET_GATE_DEFAULT_ON = (1, 30)  # beta, on by default


class CheckName(StrEnum):
    """The checks, in the order a failure is blamed: the most basic cause comes first."""

    KUBELET_TLS = "KubeletTLS"
    KUBELET_AUTHENTICATION = "KubeletAuthentication"
    RUNTIME = "Runtime"
    FEATURE_GATE = "FeatureGate"
    AUTHORIZATION = "CheckpointAuthorization"
    CANARY = "Canary"
    CRIU_CONFIG = "CRIUConfig"


#: A failure of one of these makes every capture on the node fail; the others only some.
BLOCKING = frozenset(
    {
        CheckName.KUBELET_TLS,
        CheckName.KUBELET_AUTHENTICATION,
        CheckName.RUNTIME,
        CheckName.FEATURE_GATE,
        CheckName.AUTHORIZATION,
        CheckName.CANARY,
    }
)

READY_REASON = "CaptureReady"
READY_WITH_WARNINGS = "CaptureReadyWithWarnings"
NOT_PROBED = "NotProbedYet"
UNDETERMINED = "Undetermined"
CRIU_CONFIG_CONFLICT = "CRIUConfigConflict"
CRIU_CONFIG_ERROR = "CRIUConfigError"


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
    """What the agent's CRIU configuration writer found (``agent.criu_config`` result)."""

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


@dataclass(frozen=True, slots=True)
class Check:
    name: CheckName
    status: CheckStatus
    reason: str
    message: str
    remediation: str = ""

    @property
    def blocking(self) -> bool:
        return self.name in BLOCKING


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: tuple[Check, ...]
    status: ConditionStatus
    reason: str
    message: str
    warnings: tuple[Check, ...] = field(default=())


def evaluate(probe: NodeProbe) -> Readiness:
    """Checks in blame order, and the Ready condition they add up to."""
    checks = [
        _tls(probe.kubelet),
        _authentication(probe.kubelet),
        _runtime(probe.container_runtime_version),
        _feature_gate(probe.kubelet, probe.kubelet_version),
        _authorization(probe.kubelet, probe.access_review),
    ]
    if probe.canary is not None:
        checks.append(_canary(probe.canary))
    checks.append(_criu_config(probe.criu_config))

    blocking = [c for c in checks if c.blocking]
    failed = next((c for c in blocking if c.status is CheckStatus.FAILED), None)
    warnings = tuple(c for c in checks if not c.blocking and c.status is CheckStatus.FAILED)
    if failed is not None:
        return Readiness(
            tuple(checks), ConditionStatus.FALSE, failed.reason, failed.message, warnings
        )
    unknown = [c for c in blocking if c.status is CheckStatus.UNKNOWN]
    if unknown:
        names = ", ".join(c.name for c in unknown)
        first = unknown[0]
        return Readiness(
            tuple(checks),
            ConditionStatus.UNKNOWN,
            first.reason,
            f"not yet known: {names}. {first.message}",
            warnings,
        )
    if warnings:
        text = "; ".join(f"{c.reason}: {c.message}" for c in warnings)
        return Readiness(
            tuple(checks),
            ConditionStatus.TRUE,
            READY_WITH_WARNINGS,
            f"captures work, but some will fail: {text}",
            warnings,
        )
    return Readiness(tuple(checks), ConditionStatus.TRUE, READY_REASON, "captures work")


# --- individual checks ------------------------------------------------------------------------


def _probe_failure(kubelet: KubeletProbe) -> CaptureFailure:
    return classify_capture_failure(
        status_code=kubelet.status_code, body=kubelet.body, transport=kubelet.transport
    )


def _tls(kubelet: KubeletProbe | None) -> Check:
    name = CheckName.KUBELET_TLS
    if kubelet is None:
        return Check(name, CheckStatus.UNKNOWN, NOT_PROBED, "the kubelet was not probed yet")
    if kubelet.transport in (TransportFailure.TLS, TransportFailure.REFUSED):
        failure = _probe_failure(kubelet)
        return Check(name, CheckStatus.FAILED, failure.reason, failure.message, failure.remediation)
    if kubelet.transport is TransportFailure.TIMEOUT:
        failure = _probe_failure(kubelet)
        return Check(name, CheckStatus.UNKNOWN, failure.reason, failure.message)
    if not kubelet.tls_verified:
        return Check(
            name,
            CheckStatus.FAILED,
            FailureReason.KUBELET_TLS_ERROR,
            "the agent does not verify the kubelet's serving certificate",
            "Give the agent the CA of the kubelet's serving certificate; without it the archive "
            "could come from anyone who can answer on the kubelet's address.",
        )
    return Check(name, CheckStatus.PASSED, "Verified", "the kubelet's certificate is verified")


def _handler_ran(kubelet: KubeletProbe) -> bool:
    """Did the checkpoint handler answer (so authentication and authorisation passed)?

    Its answers are a 404 naming the pod, container or timeout, or a 500 from the runtime. A
    ``404 page not found`` (no route) or an authorizer error proves nothing about either.
    """
    if kubelet.status_code not in (404, 500):
        return False
    reason = _probe_failure(kubelet).reason
    return reason not in (
        FailureReason.CHECKPOINTING_DISABLED,
        FailureReason.KUBELET_AUTHORIZATION_ERROR,
    ) or (kubelet.status_code == 500 and reason is FailureReason.CHECKPOINTING_DISABLED)


def _authentication(kubelet: KubeletProbe | None) -> Check:
    name = CheckName.KUBELET_AUTHENTICATION
    if kubelet is None or kubelet.status_code is None:
        return Check(name, CheckStatus.UNKNOWN, NOT_PROBED, "the kubelet did not answer")
    if kubelet.status_code == 401:
        failure = _probe_failure(kubelet)
        return Check(name, CheckStatus.FAILED, failure.reason, failure.message, failure.remediation)
    authorised_or_denied = kubelet.status_code == 403 or (
        _probe_failure(kubelet).reason is FailureReason.KUBELET_AUTHORIZATION_ERROR
    )
    if authorised_or_denied or _handler_ran(kubelet):
        return Check(
            name, CheckStatus.PASSED, "Authenticated", "the kubelet accepts the credentials"
        )
    return Check(
        name,
        CheckStatus.UNKNOWN,
        UNDETERMINED,
        f"the kubelet answered {kubelet.status_code} before it checked the credentials",
    )


def parse_version(text: str | None) -> tuple[str, tuple[int, int] | None]:
    """``containerd://v2.0.1-k3s1`` -> (``containerd``, (2, 0)); ``v1.31.2`` -> ("", (1, 31))."""
    if not text:
        return "", None
    scheme, _, rest = text.rpartition("://")
    match = re.match(r"v?(\d+)\.(\d+)", rest.strip())
    return scheme.lower(), (int(match.group(1)), int(match.group(2))) if match else None


def _runtime(runtime_version: str | None) -> Check:
    name = CheckName.RUNTIME
    scheme, version = parse_version(runtime_version)
    if not scheme or version is None:
        return Check(
            name,
            CheckStatus.UNKNOWN,
            NOT_PROBED,
            f"cannot read the runtime from containerRuntimeVersion {runtime_version!r}",
        )
    shown = f"{scheme} {version[0]}.{version[1]}"
    minimum = {"containerd": MIN_CONTAINERD, "cri-o": MIN_CRIO}.get(scheme)
    remediation = (
        "Checkpointing needs CRI-O >= 1.25 (with checkpoint support enabled) or containerd >= 2.0, "
        "and CRIU on the node."
    )
    if minimum is None:
        message = f"{shown} does not implement the CRI CheckpointContainer call"
        return Check(
            name, CheckStatus.FAILED, FailureReason.RUNTIME_UNSUPPORTED, message, remediation
        )
    if version < minimum:
        message = f"{shown} is too old: checkpointing needs {minimum[0]}.{minimum[1]} or newer"
        return Check(
            name, CheckStatus.FAILED, FailureReason.RUNTIME_UNSUPPORTED, message, remediation
        )
    message = f"{shown} supports checkpointing"
    if scheme == "cri-o":
        message += " when its checkpoint support is enabled (enable_criu_support, off in 1.26)"
    return Check(name, CheckStatus.PASSED, "Supported", message)


def _feature_gate(kubelet: KubeletProbe | None, kubelet_version: str | None) -> Check:
    name = CheckName.FEATURE_GATE
    if kubelet is not None and kubelet.status_code is not None:
        failure = _probe_failure(kubelet)
        if failure.reason is FailureReason.CHECKPOINTING_DISABLED and kubelet.status_code == 404:
            return Check(
                name, CheckStatus.FAILED, failure.reason, failure.message, failure.remediation
            )
        # Any answer from behind the route (auth filter or handler) proves it is installed.
        if kubelet.status_code in (401, 403, 500) or _handler_ran(kubelet):
            return Check(name, CheckStatus.PASSED, "Enabled", "the kubelet serves /checkpoint")
    _, version = parse_version(kubelet_version)
    if version is not None and version < MIN_KUBELET:
        return Check(
            name,
            CheckStatus.FAILED,
            FailureReason.CHECKPOINTING_DISABLED,
            f"kubelet {version[0]}.{version[1]} predates the checkpoint API (Kubernetes 1.25)",
            "Upgrade the node to Kubernetes 1.30 or newer, where the API is on by default.",
        )
    hint = ""
    if version is not None:
        on = version >= KUBELET_GATE_DEFAULT_ON
        hint = f" (kubelet {version[0]}.{version[1]}: gate {'on' if on else 'off'} by default)"
    return Check(
        name,
        CheckStatus.UNKNOWN,
        NOT_PROBED,
        "the probe did not reach the checkpoint handler" + hint,
    )


def _authorization(kubelet: KubeletProbe | None, review: AccessReview | None) -> Check:
    """The kubelet's own verdict wins over the access review: it may see another identity
    (a client certificate rather than the ServiceAccount) and caches its decisions."""
    name = CheckName.AUTHORIZATION
    if kubelet is not None and kubelet.status_code is not None:
        failure = _probe_failure(kubelet)
        if kubelet.status_code == 403:
            return Check(
                name, CheckStatus.FAILED, failure.reason, failure.message, failure.remediation
            )
        if failure.reason is FailureReason.KUBELET_AUTHORIZATION_ERROR:
            return Check(name, CheckStatus.UNKNOWN, failure.reason, failure.message)
        if _handler_ran(kubelet):
            return Check(
                name, CheckStatus.PASSED, "Allowed", "the kubelet allows create nodes/checkpoint"
            )
    if review is None:
        return Check(name, CheckStatus.UNKNOWN, NOT_PROBED, "authorisation was not checked yet")
    if review.allowed:
        return Check(
            name, CheckStatus.PASSED, "Allowed", "the API server allows create nodes/checkpoint"
        )
    why = f" ({review.reason})" if review.reason else ""
    return Check(
        name,
        CheckStatus.FAILED,
        FailureReason.KUBELET_FORBIDDEN,
        f"the agent may not create nodes/checkpoint on this node{why}",
        'Grant a ClusterRole rule apiGroups: [""], resources: ["nodes/checkpoint"], '
        'verbs: ["create"] to the agent.',
    )


def _canary(canary: CanaryOutcome) -> Check:
    name = CheckName.CANARY
    if canary.succeeded:
        return Check(name, CheckStatus.PASSED, "Captured", "a canary container was checkpointed")
    failure = canary.failure
    if failure is None:
        return Check(name, CheckStatus.FAILED, FailureReason.RUNTIME_ERROR, "the canary failed")
    return Check(
        name,
        CheckStatus.FAILED,
        failure.reason,
        f"canary capture failed: {failure.message}",
        failure.remediation,
    )


def _criu_config(observed: CriuConfigObservation | None) -> Check:
    name = CheckName.CRIU_CONFIG
    if observed is None or observed.state == "Unavailable":
        return Check(
            name, CheckStatus.UNKNOWN, NOT_PROBED, "the agent cannot see the node's /etc/criu"
        )
    detail = "; ".join((observed.message, *observed.notes)).strip("; ")
    if observed.state == "Conflict":
        return Check(
            name,
            CheckStatus.FAILED,
            CRIU_CONFIG_CONFLICT,
            detail,
            "Remove the file or merge the agent's options into it; the agent never overwrites it.",
        )
    if observed.state == "Error":
        return Check(name, CheckStatus.FAILED, CRIU_CONFIG_ERROR, detail)
    if not observed.tcp_established:
        return Check(
            name,
            CheckStatus.FAILED,
            FailureReason.ESTABLISHED_TCP,
            "CRIU is not configured for established TCP connections: containers holding one "
            "(a reverse shell, a C2 channel) cannot be captured",
            "Enable the chart's criuConfig setting, or add `tcp-established` to "
            "/etc/criu/runc.conf on the node.",
        )
    limit = observed.ghost_limit_bytes
    return Check(
        name,
        CheckStatus.PASSED,
        "Configured",
        f"tcp-established, ghost-limit {limit} bytes ({observed.state.lower()} file)",
    )


# --- ForensicNode status and the operator's fail-fast -----------------------------------------


def to_status(
    readiness: Readiness, conditions: list[Condition], *, now: datetime
) -> tuple[list[ReadinessCheck], list[Condition]]:
    """``status.checks`` and ``status.conditions`` (with Ready set) for the ForensicNode."""
    checks = [
        ReadinessCheck(
            name=c.name.value,
            status=c.status,
            reason=str(c.reason),
            message=c.message[:1024],
            remediation=c.remediation[:1024],
            last_probe_time=now,
        )
        for c in readiness.checks
    ]
    updated = set_condition(
        conditions,
        type_=READY,
        status=readiness.status,
        reason=readiness.reason,
        message=readiness.message,
        generation=None,
        now=now,
    )
    return checks, updated


@dataclass(frozen=True, slots=True)
class NodeNotReady:
    """Why a capture on this node would fail, as the ForensicCheckpoint's condition says it."""

    reason: str
    message: str
    remediation: str


def capture_blocker(node: ForensicNode, *, container_has_tcp: bool = False) -> NodeNotReady | None:
    """The reason to fail a capture on ``node`` at once, or ``None`` to go ahead.

    Only a *failed* blocking check stops a capture: ``Unknown`` (a new agent, a probe timeout)
    lets it run, and the kubelet's own answer decides. ``container_has_tcp`` lets the operator
    also stop early on a missing ``tcp-established`` when it knows the target holds connections.
    """
    status = node.status
    if status is None:
        return None
    name = str(node.metadata.get("name", ""))
    checks: Sequence[ReadinessCheck] = status.checks
    stopping = BLOCKING | ({CheckName.CRIU_CONFIG} if container_has_tcp else set())
    for check_name in CheckName:
        if check_name not in stopping:
            continue
        check = next((c for c in checks if c.name == check_name.value), None)
        if check is not None and check.status is CheckStatus.FAILED and check.reason:
            if (
                check_name is CheckName.CRIU_CONFIG
                and check.reason != FailureReason.ESTABLISHED_TCP
            ):
                continue
            return NodeNotReady(
                check.reason,
                f"node {name} cannot capture: {check.message}",
                check.remediation,
            )
    ready = find_condition(status.conditions, READY)
    if ready is not None and ready.status is ConditionStatus.FALSE and not checks:
        return NodeNotReady(ready.reason, f"node {name} is not ready: {ready.message}", "")
    return None


# --- the `nodes` table ------------------------------------------------------------------------

#: Column titles of ``forensic-checkpoint nodes``; one column per check, in blame order.
TABLE_COLUMNS: tuple[str, ...] = (
    "NODE",
    "READY",
    "REASON",
    "TLS",
    "AUTHN",
    "RUNTIME",
    "GATE",
    "AUTHZ",
    "CANARY",
    "CRIU",
    "HEARTBEAT",
)
_CHECK_COLUMNS = (
    CheckName.KUBELET_TLS,
    CheckName.KUBELET_AUTHENTICATION,
    CheckName.RUNTIME,
    CheckName.FEATURE_GATE,
    CheckName.AUTHORIZATION,
    CheckName.CANARY,
    CheckName.CRIU_CONFIG,
)


def table_row(node: ForensicNode, *, now: datetime) -> tuple[str, ...]:
    """One line of the table: a passing check shows ``ok``, any other its reason."""
    status = node.status
    checks = {c.name: c for c in (status.checks if status else [])}
    ready = find_condition(status.conditions, READY) if status else None
    cells = [str(node.metadata.get("name", "")), "Unknown", NOT_PROBED]
    if ready is not None:
        cells[1:3] = [ready.status.value, ready.reason]
    for name in _CHECK_COLUMNS:
        check = checks.get(name.value)
        if check is None:
            cells.append("-")
        elif check.status is CheckStatus.PASSED:
            cells.append("ok")
        else:
            cells.append(check.reason or check.status.value)
    agent = status.agent if status else None
    if agent is None:
        cells.append("never")
    else:
        age = max(0, int((now - agent.heartbeat_time).total_seconds()))
        cells.append(f"{age}s ago")
    return tuple(cells)
