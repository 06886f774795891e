"""The ForensicCheckpoint an alert capture creates: name, labels, annotations, spec.

The name is derived from the dedupe key, so the same alert always maps to the same object: a
re-send that reaches another replica, or this one after a restart (when the in-memory dedupe
is gone), gets ``409 AlreadyExists`` from the API server instead of a second capture.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from forensic_checkpoint.api.base import GROUP
from forensic_checkpoint.api.forensiccheckpoint import (
    AlertReference,
    CaptureReasonSpec,
    ForensicCheckpoint,
    ForensicCheckpointSpec,
    Phase,
)
from forensic_checkpoint.domain.alerts.policy import Decision

LABEL_SOURCE = f"{GROUP}/alert-source"
LABEL_ALERT_NAME = f"{GROUP}/alert-name"
LABEL_FINGERPRINT = f"{GROUP}/alert-fingerprint"
LABEL_POLICY = f"{GROUP}/capture-policy"
ANNOTATION_ALERT_NAME = f"{GROUP}/alert-name"
ANNOTATION_FINGERPRINT = f"{GROUP}/alert-fingerprint"
ANNOTATION_STARTS_AT = f"{GROUP}/alert-starts-at"
ANNOTATION_ALERT = f"{GROUP}/alert"
ANNOTATION_DEDUPE_KEY = f"{GROUP}/alert-dedupe-key"

#: Cap of the alert copy in the annotation; the whole object must stay far below 256 KiB of
#: annotations and etcd's 1.5 MiB.
ALERT_COPY_MAX_BYTES = 8192
_STRING_CAP = 512
_LABEL_VALUE_MAX = 63
_NAME_POD_PART = 40

#: Fields kept when the alert is too large even with long strings shortened.
_ESSENTIAL_KEYS = (
    "status", "labels", "startsAt", "fingerprint", "receiver",
    "uuid", "rule", "priority", "time", "hostname", "source",
)  # fmt: skip


#: Phases in which an alert capture holds (or waits for) a slot under the concurrency cap:
#: until its kubelet calls are done. Analyzing frees the slot (the cap bounds frozen
#: containers; the agents' analysis workers bound analyses).
SLOT_PHASES = frozenset({Phase.QUEUED, Phase.PENDING, Phase.CAPTURING})


def holds_slot(phase: Phase) -> bool:
    return phase in SLOT_PHASES


def checkpoint_name(decision: Decision) -> str:
    """``alert-<pod prefix>-<hash of dedupe key and target>``, a valid DNS subdomain."""
    target = decision.target
    if target is None:
        raise ValueError("a decision without a target has no checkpoint")
    material = "\x00".join(
        (decision.event.dedupe_key, target.namespace, target.pod, ",".join(decision.containers))
    )
    digest = hashlib.sha256(material.encode()).hexdigest()[:10]
    pod_part = re.sub(r"[^a-z0-9-]", "-", target.pod.lower())[:_NAME_POD_PART].strip("-")
    return f"alert-{pod_part}-{digest}" if pod_part else f"alert-{digest}"


def label_value(text: str) -> str:
    """A Kubernetes label value: at most 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends.
    Over-long values keep a hash suffix so that two long names stay distinct."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    if len(value) > _LABEL_VALUE_MAX:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        value = f"{value[: _LABEL_VALUE_MAX - 9]}-{digest}"
    return value.strip("._-")


def capped_alert_copy(raw: Mapping[str, Any], max_bytes: int = ALERT_COPY_MAX_BYTES) -> str:
    """The alert as compact JSON of at most ``max_bytes``; always valid JSON.

    Long strings are shortened first (``[...]`` marks it, as Falcosidekick does), then only the
    essential fields are kept, with ``"truncated": true`` saying so.
    """
    text = _dumps(raw)
    if len(text.encode()) <= max_bytes:
        return text
    shortened = _shorten(dict(raw))
    shortened["truncated"] = True
    text = _dumps(shortened)
    if len(text.encode()) <= max_bytes:
        return text
    essential = {k: shortened[k] for k in _ESSENTIAL_KEYS if k in shortened}
    essential["truncated"] = True
    text = _dumps(essential)
    if len(text.encode()) <= max_bytes:
        return text
    # Last resort: scalar fields only, each at most 64 characters (~1 KiB in all).
    bare = {
        k: v[:64] if isinstance(v, str) else v
        for k, v in essential.items()
        if not isinstance(v, dict | list)
    }
    return _dumps(bare)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _STRING_CAP:
        return value[: _STRING_CAP - 5] + "[...]"
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value[:32]]
    return value


def build_checkpoint(
    decision: Decision,
    containers: tuple[str, ...] | None = None,
    *,
    accepted_at: datetime | None = None,
) -> ForensicCheckpoint:
    """The ForensicCheckpoint for a capture decision. ``containers`` overrides the decision's
    (the receiver resolves a Falco container ID to a name first); ``accepted_at`` is when the
    receiver accepted the alert, the order in which queued alert captures are admitted."""
    target, policy, event = decision.target, decision.policy, decision.event
    if not decision.capture or target is None or policy is None:
        raise ValueError(f"not a capture decision: {decision.reason}")
    chosen = decision.containers if containers is None else containers
    capture = policy.spec.capture
    reference = AlertReference(
        source=event.source.value,
        name=event.name[:256],
        fingerprint=event.fingerprint[:256],
        starts_at=event.starts_at,
        severity=event.severity[:63],
        policy=policy.name,
        accepted_at=accepted_at,
    )
    metadata: dict[str, Any] = {
        "name": checkpoint_name(decision),
        "namespace": target.namespace,
        "labels": {
            LABEL_SOURCE: event.source.value,
            LABEL_ALERT_NAME: label_value(event.name),
            LABEL_FINGERPRINT: label_value(event.fingerprint),
            LABEL_POLICY: label_value(policy.name),
        },
        "annotations": {
            ANNOTATION_ALERT_NAME: event.name,
            ANNOTATION_FINGERPRINT: event.fingerprint,
            ANNOTATION_DEDUPE_KEY: event.dedupe_key,
            ANNOTATION_ALERT: capped_alert_copy(event.raw),
        },
    }
    if event.starts_at is not None:
        metadata["annotations"][ANNOTATION_STARTS_AT] = event.starts_at.isoformat()
    spec = ForensicCheckpointSpec(
        pod_name=target.pod,
        containers=list(chosen),
        timeout_seconds=capture.timeout_seconds,
        analysis=capture.analysis.model_copy(deep=True),
        reason=CaptureReasonSpec(
            text=f"{event.source.value} alert {event.name!r}: {decision.message}"[:1024],
            alert=reference,
        ),
    )
    return ForensicCheckpoint(metadata=metadata, spec=spec)
