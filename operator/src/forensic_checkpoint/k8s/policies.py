"""ForensicCapturePolicies, as :class:`ForensicCapturePolicy` models; the operator writes only
their status, and posts Events about them (in ``default``: the policy is cluster-scoped)."""

from __future__ import annotations

from datetime import UTC, datetime

from forensic_checkpoint.api.policy import ForensicCapturePolicy, ForensicCapturePolicyStatus
from forensic_checkpoint.k8s._rest import (
    MERGE_PATCH,
    core_path,
    custom_path,
    request_json,
    valid_items,
)
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

    def post_event(
        self, policy: ForensicCapturePolicy, *, type_: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event about ``policy`` (``kubectl describe fcpol`` shows it); needs
        ``create`` on events in ``default``, where Events of cluster-scoped objects live."""
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        crd = ForensicCapturePolicy.crd
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{policy.name}.", "namespace": EVENT_NAMESPACE},
            "involvedObject": {
                "apiVersion": f"{crd.group}/{crd.version}",
                "kind": crd.kind,
                "name": policy.name,
                "uid": policy.metadata.get("uid", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "forensic-checkpoint-alerts"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        request_json(self._api, "POST", core_path("events", namespace=EVENT_NAMESPACE), body=body)


#: Where Events about cluster-scoped objects go (as kubectl describe looks for them).
EVENT_NAMESPACE = "default"
