"""Turn a failed kubelet checkpoint call into one condition reason with a concrete remediation.

The one classifier of capture failures: the agent's captures (``agent/kubelet/outcomes.py``)
and the readiness checks (``domain/readiness/checks.py``) both call
:func:`classify_capture_failure`, which reads the table in :mod:`.rules` (data). Pure: no I/O
here; the agent reads CRIU's log at :func:`.criu_log.criu_log_path` and passes its text in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forensic_checkpoint.domain.failures.criu_log import (
    DEFAULT_EXCERPT_BYTES,
    MAX_LINE_CHARS,
    criu_log_excerpt,
    criu_log_path,
    first_error_line,
)
from forensic_checkpoint.domain.failures.model import FailureReason, Rule, TransportFailure
from forensic_checkpoint.domain.failures.rules import (
    CRIU_LOG_RULES,
    KUBELET_RULES,
    TRANSPORT_RULES,
)

_MAX_FIELD_CHARS = 256


@dataclass(frozen=True, slots=True)
class CaptureFailure:
    """Why a capture failed, what to change, and the CRIU log lines that show it."""

    reason: FailureReason
    message: str
    remediation: str
    #: Size-capped CRIU log lines (errors and the lines before them); "" without a log.
    excerpt: str = ""
    #: Host path of CRIU's log as the runtime reported it, for the agent to read and keep.
    criu_log_path: str | None = None
    #: True when the same request may succeed later without anyone changing anything.
    retryable: bool = False
    #: Where the matched text comes from (program and source file), for reviewers and docs.
    source: str = ""


_KUBELET_500 = re.compile(
    r"^checkpointing of (?P<namespace>[^/\s]+)/(?P<pod>[^/\s]+)/(?P<container>\S+) failed \(",
)


def classify_capture_failure(
    *,
    status_code: int | None,
    body: str = "",
    criu_log: str | None = None,
    transport: TransportFailure | None = None,
    max_excerpt_bytes: int = DEFAULT_EXCERPT_BYTES,
) -> CaptureFailure:
    """Classify one failed checkpoint call.

    ``status_code``/``body`` are the kubelet's answer (``None`` when it never answered; then
    ``transport`` says why). ``criu_log`` is the text of the file at :func:`criu_log_path`.
    """
    if transport is not None:
        row = TRANSPORT_RULES[transport]
        return CaptureFailure(row.reason, row.message, row.remediation, retryable=row.retryable)
    body = body.strip()
    log_path = criu_log_path(body)
    found = _first_match(KUBELET_RULES, body, status_code)
    if found is None:
        return _unrecognised(status_code, body, criu_log, log_path, max_excerpt_bytes)
    rule, match = found
    focus: re.Pattern[str] | None = None
    refined = (
        _first_match(CRIU_LOG_RULES, criu_log or None, None) if rule.refine_with_criu_log else None
    )
    if refined is not None:
        rule, match = refined
        focus = rule.pattern
    fields = _fields(body, log_path, rule, match)
    message = rule.message.format_map(fields)
    if rule.reason is FailureReason.RUNTIME_ERROR and rule.refine_with_criu_log and criu_log:
        first_error = first_error_line(criu_log)
        if first_error:
            message = f"{message} CRIU's first error: {first_error}"
    return CaptureFailure(
        reason=rule.reason,
        message=message,
        remediation=rule.remediation.format_map(fields),
        excerpt=criu_log_excerpt(criu_log, focus, max_bytes=max_excerpt_bytes) if criu_log else "",
        criu_log_path=log_path,
        retryable=rule.retryable,
        source=rule.source,
    )


def _fields(body: str, log_path: str | None, rule: Rule, match: re.Match[str]) -> _Defaulting:
    """What a rule's templates may name: the kubelet body's ``namespace``/``pod``/``container``,
    the CRIU log's path, the pattern's named groups and what the rule derives from them."""
    fields = _Defaulting(container_ref="the container")
    head = _KUBELET_500.match(body)
    if head is not None:
        fields.update(head.groupdict())
        fields["container_ref"] = "container {container} of pod {namespace}/{pod}".format(**fields)
    fields["log_path"] = log_path or "the path in the runtime's error"
    # Matched values come from inside the container (file names, process names): bound them.
    fields.update({k: v[:_MAX_FIELD_CHARS] for k, v in match.groupdict().items() if v is not None})
    if rule.derive is not None:
        fields.update(rule.derive(fields))
    return fields


def _first_match(
    rules: tuple[Rule, ...], text: str | None, status_code: int | None
) -> tuple[Rule, re.Match[str]] | None:
    if text is None:
        return None
    for rule in rules:
        if rule.statuses and status_code not in rule.statuses:
            continue
        match = rule.pattern.search(text)
        if match is not None:
            return rule, match
    return None


def _unrecognised(
    status_code: int | None,
    body: str,
    criu_log: str | None,
    log_path: str | None,
    max_excerpt_bytes: int,
) -> CaptureFailure:
    """No rule matched: keep the runtime's own words, one line, and say what is known."""
    summary = " ".join(body.split())[:MAX_LINE_CHARS] or "(empty body)"
    if status_code == 500:
        return CaptureFailure(
            FailureReason.RUNTIME_ERROR,
            f"The runtime failed the checkpoint: {summary}",
            "Read the runtime's error above and the container runtime's log on the node.",
            excerpt=criu_log_excerpt(criu_log, None, max_bytes=max_excerpt_bytes)
            if criu_log
            else "",
            criu_log_path=log_path,
        )
    server_side = status_code is not None and status_code >= 500
    return CaptureFailure(
        FailureReason.KUBELET_ERROR if server_side else FailureReason.KUBELET_BAD_RESPONSE,
        f"The kubelet answered HTTP {status_code}: {summary}",
        "Check the kubelet's log on the node for this request.",
        retryable=status_code is not None and status_code >= 502,
    )


class _Defaulting(dict[str, str]):
    """Template fields a rule's text names but the match did not produce read as empty."""

    def __missing__(self, key: str) -> str:
        return ""
