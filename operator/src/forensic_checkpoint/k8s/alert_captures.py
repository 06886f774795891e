"""The API calls the alert receiver makes: read policies, count active alert captures, look at
the alerted pod, create the ForensicCheckpoint.

Synchronous, like the kubernetes client; the receiver runs them through ``asyncio.to_thread``.
The receiver's identity needs: ``list`` on forensiccapturepolicies and ``patch`` on their status,
``list`` and ``create`` on forensiccheckpoints, ``get`` on pods, ``create`` on events.
"""

from __future__ import annotations

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.api.policy import ForensicCapturePolicy, ForensicCapturePolicyStatus
from forensic_checkpoint.domain.alerts.capture import (
    ANNOTATION_DEDUPE_KEY,
    LABEL_SOURCE,
    holds_slot,
)
from forensic_checkpoint.errors import ConflictError
from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint.k8s.pods import PodContainers, Pods
from forensic_checkpoint.k8s.policies import ForensicCapturePolicies

__all__ = [
    "RBAC_RULES",
    "PodContainers",
    "active_alert_captures",
    "create_checkpoint",
    "list_alert_captures",
    "list_capture_policies",
    "pod_containers",
    "post_policy_event",
    "write_policy_status",
]

_FCP = ForensicCheckpoint.crd
_POLICY = ForensicCapturePolicy.crd

#: The RBAC rules the receiver's identity needs, and no more (deploy/rbac mirrors them).
RBAC_RULES: tuple[dict[str, list[str]], ...] = (
    {"apiGroups": [_POLICY.group], "resources": [_POLICY.plural], "verbs": ["list"]},
    {"apiGroups": [_POLICY.group], "resources": [f"{_POLICY.plural}/status"], "verbs": ["patch"]},
    # reveal: a capture policy (cluster admins') may ask for unredacted matches.
    {"apiGroups": [_FCP.group], "resources": [_FCP.plural], "verbs": ["list", "create", "reveal"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    # Warning Events on a policy whose alerts the full capture queue refused.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
)


def list_capture_policies(api: ApiClient) -> list[ForensicCapturePolicy]:
    """Every valid policy; an invalid one is logged and left out rather than failing all."""
    return ForensicCapturePolicies(api).list()


def write_policy_status(api: ApiClient, name: str, status: ForensicCapturePolicyStatus) -> None:
    ForensicCapturePolicies(api).patch_status(name, status)


def post_policy_event(
    api: ApiClient, policy: ForensicCapturePolicy, type_: str, reason: str, message: str
) -> None:
    ForensicCapturePolicies(api).post_event(policy, type_=type_, reason=reason, message=message)


def active_alert_captures(api: ApiClient) -> set[str]:
    """Capture keys (``namespace/pod/dedupe key``) of receiver-created ForensicCheckpoints that
    hold or wait for a slot under the concurrency cap, in every namespace: Queued, Pending or
    Capturing. A capture frees its slot once its kubelet calls are done (Analyzing): the cap
    bounds the containers frozen at once; the agents' analysis workers bound the analyses.

    The ``alert-source`` label only narrows the list: anyone who may create a ForensicCheckpoint
    may set it, so a tenant's labelled objects would fill the cap for the whole cluster. Only an
    object with ``spec.reason.alert`` counts; admission lets the receiver's identity alone set
    that field (docs/security-model.md), so a tenant cannot forge one.
    """
    active: set[str] = set()
    for fcp in list_alert_captures(api):
        if fcp.status is not None and not holds_slot(fcp.status.phase):
            continue
        meta = fcp.metadata
        key = (meta.get("annotations") or {}).get(ANNOTATION_DEDUPE_KEY, meta.get("name", ""))
        active.add(f"{meta.get('namespace', '')}/{fcp.spec.pod_name}/{key}")
    return active


def list_alert_captures(api: ApiClient) -> list[ForensicCheckpoint]:
    """The receiver's ForensicCheckpoints (with ``spec.reason.alert``) in every namespace,
    those being deleted left out."""
    return [
        fcp
        for fcp in ForensicCheckpoints(api).list(label_selector=LABEL_SOURCE)
        if fcp.spec.reason is not None
        and fcp.spec.reason.alert is not None
        and not fcp.metadata.get("deletionTimestamp")
    ]


def pod_containers(api: ApiClient, namespace: str, pod: str) -> PodContainers | None:
    """The pod's containers, or ``None`` when there is no such pod."""
    return Pods(api).get_containers(namespace, pod)


def create_checkpoint(api: ApiClient, checkpoint: ForensicCheckpoint) -> bool:
    """Create it; ``False`` when an object of that name already exists (the same alert, seen by
    another replica or before a restart)."""
    try:
        ForensicCheckpoints(api).create(checkpoint)
    except ConflictError:
        return False
    return True
