"""ForensicCapturePolicies, as :class:`ForensicCapturePolicy` models (read only)."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from forensic_checkpoint.api.policy import ForensicCapturePolicy
from forensic_checkpoint.k8s._rest import custom_path, request_json
from forensic_checkpoint.k8s.client import ApiClient

log = logging.getLogger(__name__)


class ForensicCapturePolicies:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def list(self) -> list[ForensicCapturePolicy]:
        """Every valid policy; an invalid one is logged and left out rather than failing all."""
        raw = request_json(self._api, "GET", custom_path(ForensicCapturePolicy.crd))
        policies: list[ForensicCapturePolicy] = []
        for item in (raw or {}).get("items") or []:
            try:
                policies.append(ForensicCapturePolicy.model_validate(item))
            except ValidationError as exc:
                name = (item.get("metadata") or {}).get("name", "?")
                log.warning("ignoring invalid ForensicCapturePolicy %s: %s", name, exc)
        return policies
