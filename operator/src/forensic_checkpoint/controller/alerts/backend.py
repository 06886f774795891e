"""What the receiver needs from the cluster, as an async interface.

:class:`CaptureBackend` is the seam: :class:`KubeCaptureBackend` talks to the API server
(through :mod:`forensic_checkpoint.k8s.alert_captures`, in worker threads); the operator passes
one to :func:`serve_alerts`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.api.policy import ForensicCapturePolicy
from forensic_checkpoint.k8s import alert_captures
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


class KubeCaptureBackend:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    async def policies(self) -> list[ForensicCapturePolicy]:
        return await asyncio.to_thread(alert_captures.list_capture_policies, self._api)

    async def active_captures(self) -> set[str]:
        return await asyncio.to_thread(alert_captures.active_alert_captures, self._api)

    async def pod_containers(self, namespace: str, pod: str) -> PodContainers | None:
        return await asyncio.to_thread(alert_captures.pod_containers, self._api, namespace, pod)

    async def create(self, checkpoint: ForensicCheckpoint) -> bool:
        return await asyncio.to_thread(alert_captures.create_checkpoint, self._api, checkpoint)
