"""The vocabulary of the failure table: condition reasons and the shape of a row (pure)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class FailureReason(StrEnum):
    """Condition reasons for a failed capture; kubelet-level names match the agent contract."""

    KUBELET_UNAUTHORIZED = "KubeletUnauthorized"
    KUBELET_FORBIDDEN = "KubeletForbidden"
    KUBELET_AUTHORIZATION_ERROR = "KubeletAuthorizationError"
    KUBELET_TLS_ERROR = "KubeletTLSError"
    KUBELET_UNREACHABLE = "KubeletUnreachable"
    KUBELET_ERROR = "KubeletError"
    #: The kubelet answered a status below 500 that no rule knows (or 200 without one path).
    KUBELET_BAD_RESPONSE = "KubeletBadResponse"
    CHECKPOINTING_DISABLED = "CheckpointingDisabled"
    CONTAINER_NOT_FOUND = "ContainerNotFound"
    CONTAINER_NOT_RUNNING = "ContainerNotRunning"
    RUNTIME_UNSUPPORTED = "RuntimeUnsupported"
    CRIU_MISSING = "CRIUMissing"
    ESTABLISHED_TCP = "EstablishedTCPNeedsConfig"
    IN_FLIGHT_TCP = "InFlightTCPNeedsConfig"
    FILE_LOCKS = "FileLocksNeedConfig"
    GHOST_FILE_TOO_LARGE = "GhostFileTooLarge"
    TRACED_TASK = "TracedTask"
    MEMFD_SECRET = "MemfdSecret"  # noqa: S105 - a reason name, not a secret
    TIMEOUT = "Timeout"
    RUNTIME_ERROR = "RuntimeError"
    #: The agent refused the capture before calling the kubelet: the node's disk is too full.
    INSUFFICIENT_DISK_SPACE = "InsufficientDiskSpace"


class TransportFailure(StrEnum):
    """Failures where the kubelet never answered; the caller knows them from its exception."""

    TIMEOUT = "timeout"
    TLS = "tls"
    REFUSED = "refused"


Fields = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Rule:
    """One recognisable failure text. ``message``/``remediation`` are ``str.format`` templates
    over the pattern's named groups, the kubelet body's ``namespace``/``pod``/``container`` and
    whatever ``derive`` adds."""

    reason: FailureReason
    pattern: re.Pattern[str]
    source: str
    message: str
    remediation: str
    #: HTTP statuses this rule applies to; empty = any status.
    statuses: frozenset[int] = frozenset()
    retryable: bool = False
    #: The body only says "CRIU failed": look at the CRIU log for the cause.
    refine_with_criu_log: bool = False
    derive: Callable[[Fields], dict[str, str]] | None = None


@dataclass(frozen=True, slots=True)
class TransportRule:
    """A call the kubelet never answered."""

    reason: FailureReason
    message: str
    remediation: str
    retryable: bool
