"""The API calls the alert receiver makes: read policies, count active alert captures, look at
the alerted pod, create the ForensicCheckpoint.

Synchronous, like the kubernetes client; the receiver runs them through ``asyncio.to_thread``.
The receiver's identity needs: ``list`` on forensiccapturepolicies, ``list`` and ``create`` on
forensiccheckpoints, ``get`` on pods.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint, Phase
from forensic_checkpoint.api.policy import ForensicCapturePolicy
from forensic_checkpoint.domain.alerts.capture import ANNOTATION_DEDUPE_KEY, LABEL_SOURCE
from forensic_checkpoint.errors import ConflictError, NotFoundError
from forensic_checkpoint.k8s.client import ApiClient, request_json

log = logging.getLogger(__name__)

_FCP = ForensicCheckpoint.crd
_POLICY = ForensicCapturePolicy.crd
_TERMINAL = {Phase.COMPLETED.value, Phase.FAILED.value}

#: The RBAC rules the receiver's identity needs, and no more (deploy/rbac mirrors them).
RBAC_RULES: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": [_POLICY.group], "resources": [_POLICY.plural], "verbs": ["list"]},
    {"apiGroups": [_FCP.group], "resources": [_FCP.plural], "verbs": ["list", "create"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
)


@dataclass(frozen=True)
class PodContainers:
    """The alerted pod's containers: spec names, and runtime IDs by name (``containerd://...``
    prefixes stripped) for resolving a Falco ``container.id``."""

    names: tuple[str, ...]
    ids: Mapping[str, str]


def list_capture_policies(api: ApiClient) -> list[ForensicCapturePolicy]:
    """Every valid policy; an invalid one is logged and left out rather than failing all."""
    raw = request_json(api, "GET", f"/apis/{_POLICY.group}/{_POLICY.version}/{_POLICY.plural}")
    policies: list[ForensicCapturePolicy] = []
    for item in (raw or {}).get("items") or []:
        try:
            policies.append(ForensicCapturePolicy.model_validate(item))
        except ValidationError as exc:
            name = (item.get("metadata") or {}).get("name", "?")
            log.warning("ignoring invalid ForensicCapturePolicy %s: %s", name, exc)
    return policies


def active_alert_captures(api: ApiClient) -> set[str]:
    """Capture keys (``namespace/pod/dedupe key``) of alert-created ForensicCheckpoints that
    have not reached a terminal phase, in every namespace."""
    raw = request_json(
        api,
        "GET",
        f"/apis/{_FCP.group}/{_FCP.version}/{_FCP.plural}",
        query={"labelSelector": LABEL_SOURCE},
    )
    active: set[str] = set()
    for item in (raw or {}).get("items") or []:
        if ((item.get("status") or {}).get("phase") or "") in _TERMINAL:
            continue
        meta = item.get("metadata") or {}
        key = (meta.get("annotations") or {}).get(ANNOTATION_DEDUPE_KEY, meta.get("name", ""))
        pod = (item.get("spec") or {}).get("podName", "")
        active.add(f"{meta.get('namespace', '')}/{pod}/{key}")
    return active


def pod_containers(api: ApiClient, namespace: str, pod: str) -> PodContainers | None:
    """The pod's containers, or ``None`` when there is no such pod."""
    try:
        raw = request_json(api, "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")
    except NotFoundError:
        return None
    return _pod_containers(raw or {})


def _pod_containers(raw: Mapping[str, Any]) -> PodContainers:
    names = tuple(str(c.get("name")) for c in (raw.get("spec") or {}).get("containers") or [])
    ids: dict[str, str] = {}
    for status in (raw.get("status") or {}).get("containerStatuses") or []:
        container_id = str(status.get("containerID") or "")
        if container_id:
            ids[str(status.get("name"))] = container_id.split("://", 1)[-1]
    return PodContainers(names=names, ids=ids)


def create_checkpoint(api: ApiClient, checkpoint: ForensicCheckpoint) -> bool:
    """Create it; ``False`` when an object of that name already exists (the same alert, seen by
    another replica or before a restart)."""
    namespace = checkpoint.metadata["namespace"]
    path = f"/apis/{_FCP.group}/{_FCP.version}/namespaces/{namespace}/{_FCP.plural}"
    try:
        request_json(api, "POST", path, body=checkpoint.to_kube())
    except ConflictError:
        return False
    return True
