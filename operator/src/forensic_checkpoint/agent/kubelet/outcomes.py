"""Failed kubelet checkpoint calls -> condition reasons, through the one failure classifier.

The reasons, messages and remediations come from the table that ``domain.capture_failures``
reads; this module adds what only the agent knows: which node and container the call was for,
how long it waited, the text of the runtime's CRIU log (when the runtime's error names it and
a :class:`.criu_logs.CriuLogSource` may read it: only CRIU logs under the configured runtime
directories, never a path on the kubelet's word alone).
"""

from __future__ import annotations

from dataclasses import dataclass

from forensic_checkpoint.agent.kubelet.criu_logs import CriuLogSource
from forensic_checkpoint.domain.failures.classify import CaptureFailure, classify_capture_failure
from forensic_checkpoint.domain.failures.criu_log import criu_log_path
from forensic_checkpoint.domain.failures.model import FailureReason, TransportFailure

#: A kubelet body is the runtime's text; keep conditions readable and events small.
MAX_MESSAGE = 1024

# The reasons other agent modules name (the contract fixes them; docs/agent.md lists them).
TIMEOUT = FailureReason.TIMEOUT.value
KUBELET_TLS_ERROR = FailureReason.KUBELET_TLS_ERROR.value
KUBELET_UNREACHABLE = FailureReason.KUBELET_UNREACHABLE.value
KUBELET_BAD_RESPONSE = FailureReason.KUBELET_BAD_RESPONSE.value


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


def _outcome(failure: CaptureFailure, where: str, status: int | None = None) -> Outcome:
    return Outcome(
        failure.reason.value,
        _clip(f"{failure.message} ({where})"),
        failure.remediation or None,
        status,
        failure.excerpt or None,
    )


def classify_http(
    status: int,
    body: str,
    *,
    node: str,
    target: str,
    criu_logs: CriuLogSource | None = None,
) -> Outcome:
    """The outcome of a kubelet answer other than 200. ``target`` is ``ns/pod/container``.
    Where the body names the runtime's CRIU log and ``criu_logs`` may read it, the log refines
    the reason (``EstablishedTCPNeedsConfig``, ``TracedTask`` ...)."""
    path = criu_log_path(body)
    log = criu_logs.read(path) if path and criu_logs is not None else None
    failure = classify_capture_failure(status_code=status, body=body, criu_log=log)
    return _outcome(failure, f"kubelet on {node}, {target}: HTTP {status}", status)


def _transport(failure: TransportFailure, where: str) -> Outcome:
    return _outcome(classify_capture_failure(status_code=None, transport=failure), where)


def timeout(node: str, target: str, seconds: float) -> Outcome:
    # The agent waits max(timeoutSeconds, runtimeRequestTimeout) + margin, longer than the
    # kubelet's own deadline: reaching it means a stuck runtime or a wrong agent setting.
    return _transport(
        TransportFailure.TIMEOUT, f"kubelet on {node}, {target}: no answer within {seconds:g} s"
    )


def tls_error(node: str, detail: str) -> Outcome:
    return _transport(TransportFailure.TLS, f"kubelet on {node}: {detail}")


def unreachable(node: str, detail: str) -> Outcome:
    return _transport(TransportFailure.REFUSED, f"kubelet on {node}: {detail}")
