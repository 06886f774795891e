"""Pods, read as the facts their callers decide on: the capture target (``PodFacts``) and the
alerted pod's containers (``PodContainers``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from forensic_checkpoint.domain.capture.targets import PodFacts, pod_facts
from forensic_checkpoint.errors import NotFoundError
from forensic_checkpoint.k8s._rest import core_path, request_json
from forensic_checkpoint.k8s.client import ApiClient


@dataclass(frozen=True)
class PodContainers:
    """The alerted pod's containers: spec names, and runtime IDs by name (``containerd://...``
    prefixes stripped) for resolving a Falco ``container.id``."""

    names: tuple[str, ...]
    ids: Mapping[str, str]


class Pods:
    """Pods (read only)."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def get_facts(self, namespace: str, name: str) -> PodFacts | None:
        """The pod's facts, or ``None`` if it does not exist."""
        raw = self._get(namespace, name)
        return None if raw is None else pod_facts(raw)

    def get_containers(self, namespace: str, name: str) -> PodContainers | None:
        """The pod's containers, or ``None`` when there is no such pod."""
        raw = self._get(namespace, name)
        return None if raw is None else pod_containers(raw)

    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            raw = request_json(self._api, "GET", core_path("pods", namespace=namespace, name=name))
        except NotFoundError:
            return None
        return dict(raw or {})


def pod_containers(raw: Mapping[str, Any]) -> PodContainers:
    names = tuple(str(c.get("name")) for c in (raw.get("spec") or {}).get("containers") or [])
    ids: dict[str, str] = {}
    for status in (raw.get("status") or {}).get("containerStatuses") or []:
        container_id = str(status.get("containerID") or "")
        if container_id:
            ids[str(status.get("name"))] = container_id.split("://", 1)[-1]
    return PodContainers(names=names, ids=ids)
