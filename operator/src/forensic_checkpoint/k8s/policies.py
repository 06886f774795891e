"""ForensicCapturePolicies, as :class:`ForensicCapturePolicy` models; the operator writes only
their status."""

from __future__ import annotations

from forensic_checkpoint.api.policy import ForensicCapturePolicy, ForensicCapturePolicyStatus
from forensic_checkpoint.k8s._rest import MERGE_PATCH, custom_path, request_json, valid_items
from forensic_checkpoint.k8s.client import ApiClient


class ForensicCapturePolicies:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def list(self) -> list[ForensicCapturePolicy]:
        """Every valid policy; an invalid one is logged and left out rather than failing all."""
        raw = request_json(self._api, "GET", custom_path(ForensicCapturePolicy.crd))
        return valid_items(ForensicCapturePolicy, raw)

    def patch_status(self, name: str, status: ForensicCapturePolicyStatus) -> None:
        """Replace the status's fields (needs ``patch`` on forensiccapturepolicies/status)."""
        body = {"status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}
        path = custom_path(ForensicCapturePolicy.crd, name=name, subresource="status")
        request_json(self._api, "PATCH", path, body=body, content_type=MERGE_PATCH)
