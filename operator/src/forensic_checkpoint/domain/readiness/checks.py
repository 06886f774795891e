"""The readiness checks, one function each, judging a :class:`~.probe.NodeProbe` (pure).

:func:`run_checks` returns them in blame order: when several fail, the most basic cause (TLS,
then authentication, the runtime, the feature gate, authorisation) is the one the node reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from forensic_checkpoint.api.forensicnode import CheckStatus
from forensic_checkpoint.domain.failures.classify import CaptureFailure, classify_capture_failure
from forensic_checkpoint.domain.failures.model import FailureReason, TransportFailure
from forensic_checkpoint.domain.readiness.probe import (
    AccessReview,
    CanaryOutcome,
    CriuConfigObservation,
    KubeletProbe,
    NodeProbe,
)

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
class Check:
    name: CheckName
    status: CheckStatus
    reason: str
    message: str
    remediation: str = ""

    @property
    def blocking(self) -> bool:
        return self.name in BLOCKING


def run_checks(probe: NodeProbe) -> list[Check]:
    """The checks in blame order; the canary only when the agent ran one."""
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
    return checks


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
