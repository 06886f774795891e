"""Kubelet checkpoint outcomes -> condition reasons (pure; the contract fixes the names).

The kubelet's own texts are the only way to tell some failures apart: a 404 is the feature gate
being off (``404 page not found``: the route is not registered) or a pod/container the kubelet
does not know; every runtime failure is a 500. 500 bodies are refined further by READINESS's
``domain.capture_failures`` classifier when it is present.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: A kubelet body is the runtime's text; keep conditions readable and events small.
MAX_MESSAGE = 1024
_MAX_LOG_BYTES = 256 * 1024

KUBELET_UNAUTHORIZED = "KubeletUnauthorized"
KUBELET_FORBIDDEN = "KubeletForbidden"
CHECKPOINTING_DISABLED = "CheckpointingDisabled"
CONTAINER_NOT_FOUND = "ContainerNotFound"
RUNTIME_ERROR = "RuntimeError"
TIMEOUT = "Timeout"
KUBELET_TLS_ERROR = "KubeletTLSError"
KUBELET_UNREACHABLE = "KubeletUnreachable"
KUBELET_BAD_RESPONSE = "KubeletBadResponse"


@dataclass(frozen=True)
class Outcome:
    """A failed checkpoint call, as a condition would show it."""

    reason: str
    message: str
    remediation: str | None = None
    status_code: int | None = None
    #: Relevant lines of the runtime's CRIU log, when the agent could read it.
    criu_log_excerpt: str | None = None


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def classify_http(status: int, body: str, *, node: str, target: str) -> Outcome:
    """The outcome of a kubelet answer other than 200. ``target`` is ``ns/pod/container``."""
    text = _clip(body)
    if status == 401:
        return Outcome(
            KUBELET_UNAUTHORIZED,
            f"kubelet on {node} rejected the agent's credentials (401): {text}",
            "Check the agent's kubelet client certificate (signed by the kubelet's client CA) "
            "or token (kubelet webhook authentication must be enabled).",
            status,
        )
    if status == 403:
        return Outcome(
            KUBELET_FORBIDDEN,
            f"kubelet on {node} refused the checkpoint (403): {text}; the agent's identity lacks "
            "the 'create nodes/checkpoint' permission",
            "Bind a ClusterRole with apiGroups [''], resources ['nodes/checkpoint'], verbs "
            "['create'] to the agent's kubelet client identity.",
            status,
        )
    if status == 404:
        return _not_found(text, node=node, target=target)
    if status >= 500:
        refined = _refine_runtime_failure(status, text)
        if refined is not None:
            return refined
        return Outcome(
            RUNTIME_ERROR,
            f"kubelet on {node} failed to checkpoint {target} ({status}): {text}",
            "Read the runtime's CRIU dump.log named in the message on the node.",
            status,
        )
    return Outcome(
        KUBELET_BAD_RESPONSE,
        f"kubelet on {node} answered {status} to the checkpoint of {target}: {text}",
        None,
        status,
    )


def _not_found(text: str, *, node: str, target: str) -> Outcome:
    """404: the route is missing (gate off) or the pod/container is unknown to this kubelet."""
    status = 404
    if "page not found" in text:
        return Outcome(
            CHECKPOINTING_DISABLED,
            f"kubelet on {node} has no checkpoint API (404 page not found): "
            "the ContainerCheckpoint feature gate is off",
            "Enable the kubelet feature gate ContainerCheckpoint=true (beta, on by default "
            "since Kubernetes 1.30) and restart the kubelet.",
            status,
        )
    return Outcome(
        CONTAINER_NOT_FOUND,
        f"kubelet on {node} does not know {target} (404): {text}",
        "Check that the pod runs on this node and the container name is in its spec.",
        status,
    )


def _refine_runtime_failure(status: int, body: str) -> Outcome | None:
    """READINESS's classifier (``domain.capture_failures``), if present; else ``None``.

    Imported by name so the agent keeps working, with the generic ``RuntimeError``, in a build
    without that module. Where the body names the runtime's CRIU log and the agent can read it
    (hostPath), the log refines the reason (``EstablishedTCPNeedsConfig``, ``TracedTask`` ...).
    """
    try:
        module = importlib.import_module("forensic_checkpoint.domain.capture_failures")
    except ImportError:
        return None
    classify: Any = getattr(module, "classify_capture_failure", None)
    if classify is None:
        return None
    try:
        log_path = module.criu_log_path(body)
        result = classify(status_code=status, body=body, criu_log=_read_log(log_path))
    except Exception:  # a classifier bug must not crash a capture
        return None
    reason = str(getattr(result, "reason", "") or "")
    if not reason:
        return None
    return Outcome(
        reason,
        _clip(str(getattr(result, "message", "") or body)),
        getattr(result, "remediation", None) or None,
        status,
        str(getattr(result, "excerpt", "") or "") or None,
    )


def _read_log(path: str | None) -> str | None:
    """The runtime's CRIU log, when the agent can see it; at most its last 256 KiB."""
    if not path:
        return None
    try:
        with Path(path).open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _MAX_LOG_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def timeout(node: str, target: str, seconds: float) -> Outcome:
    # The agent waits max(timeoutSeconds, runtimeRequestTimeout) + margin, longer than the
    # kubelet's own deadline: reaching it means a stuck runtime or a wrong agent setting.
    return Outcome(
        TIMEOUT,
        f"kubelet on {node} did not answer the checkpoint of {target} within {seconds:g} s",
        "Check the runtime: CRIU may be waiting on a frozen task. Check that the agent's "
        "--kubelet-runtime-request-timeout is the kubelet's runtimeRequestTimeout; "
        "spec.timeoutSeconds only lengthens a dump beyond it.",
    )


def tls_error(node: str, detail: str) -> Outcome:
    return Outcome(
        KUBELET_TLS_ERROR,
        f"TLS handshake with the kubelet on {node} failed: {_clip(detail)}",
        "Give the agent the CA that signed the kubelet's serving certificate (--kubelet-ca).",
    )


def unreachable(node: str, detail: str) -> Outcome:
    return Outcome(
        KUBELET_UNREACHABLE,
        f"kubelet on {node} is unreachable: {_clip(detail)}",
        "Check the kubelet runs and the Node's status.daemonEndpoints.kubeletEndpoint.Port.",
    )
