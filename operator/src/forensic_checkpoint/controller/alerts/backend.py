"""What the receiver needs from the cluster, as an async interface.

:class:`CaptureBackend` is the seam: :class:`KubeCaptureBackend` talks to the API server
(through :mod:`forensic_checkpoint.k8s.alert_captures`, in worker threads); the operator passes
one to :func:`serve_alerts`.

Every ForensicCheckpoint it creates carries the annotation ``requested-by`` with the receiver's
own user name (asked once, with a SelfSubjectReview). The chart's admission policy checks that
the annotation names the creating user and that only this user sets ``spec.reason.alert``; the
operator records alert provenance only when the two agree (``domain.evidence.checkpoint_custody``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.api.policy import ForensicCapturePolicy, ForensicCapturePolicyStatus
from forensic_checkpoint.domain.evidence.checkpoint_custody import REQUESTED_BY_ANNOTATION
from forensic_checkpoint.k8s import alert_captures, reviews
from forensic_checkpoint.k8s.alert_captures import PodContainers
from forensic_checkpoint.k8s.client import ApiClient


class CaptureBackend(Protocol):
    async def policies(self) -> list[ForensicCapturePolicy]: ...

    async def active_captures(self) -> set[str]:
        """Capture keys of alert-created ForensicCheckpoints not yet Completed or Failed."""
        ...

    async def pod_containers(self, namespace: str, pod: str) -> PodContainers | None: ...

    async def create(self, checkpoint: ForensicCheckpoint) -> bool:
        """Create it; False when it already exists."""
        ...

    async def write_policy_status(self, name: str, status: ForensicCapturePolicyStatus) -> None: ...

    async def post_policy_event(
        self, policy: ForensicCapturePolicy, type_: str, reason: str, message: str
    ) -> None: ...


class KubeCaptureBackend:
    def __init__(self, api: ApiClient) -> None:
        self._api = api
        self._identity = ""

    async def policies(self) -> list[ForensicCapturePolicy]:
        return await asyncio.to_thread(alert_captures.list_capture_policies, self._api)

    async def active_captures(self) -> set[str]:
        return await asyncio.to_thread(alert_captures.active_alert_captures, self._api)

    async def pod_containers(self, namespace: str, pod: str) -> PodContainers | None:
        return await asyncio.to_thread(alert_captures.pod_containers, self._api, namespace, pod)

    async def write_policy_status(self, name: str, status: ForensicCapturePolicyStatus) -> None:
        await asyncio.to_thread(alert_captures.write_policy_status, self._api, name, status)

    async def post_policy_event(
        self, policy: ForensicCapturePolicy, type_: str, reason: str, message: str
    ) -> None:
        await asyncio.to_thread(
            alert_captures.post_policy_event, self._api, policy, type_, reason, message
        )

    async def create(self, checkpoint: ForensicCheckpoint) -> bool:
        if not self._identity:
            self._identity = await asyncio.to_thread(reviews.self_subject, self._api)
        annotations = {
            **(checkpoint.metadata.get("annotations") or {}),
            REQUESTED_BY_ANNOTATION: self._identity,
        }
        stamped = checkpoint.model_copy(
            update={"metadata": {**checkpoint.metadata, "annotations": annotations}}
        )
        return await asyncio.to_thread(alert_captures.create_checkpoint, self._api, stamped)
