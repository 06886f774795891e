"""ForensicCapturePolicies, as :class:`ForensicCapturePolicy` models (read only)."""

from __future__ import annotations

from forensic_checkpoint.api.policy import ForensicCapturePolicy
from forensic_checkpoint.k8s._rest import custom_path, request_json, valid_items
from forensic_checkpoint.k8s.client import ApiClient


class ForensicCapturePolicies:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def list(self) -> list[ForensicCapturePolicy]:
        """Every valid policy; an invalid one is logged and left out rather than failing all."""
        raw = request_json(self._api, "GET", custom_path(ForensicCapturePolicy.crd))
        return valid_items(ForensicCapturePolicy, raw)
