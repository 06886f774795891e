"""ForensicCheckpoints in the API server, as :class:`ForensicCheckpoint` models.

Synchronous, like the kubernetes client: async callers (the kopf handlers) run these through
``asyncio.to_thread`` so that the event loop never waits on the network.
"""

from __future__ import annotations

from typing import Any

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint, ForensicCheckpointStatus
from forensic_checkpoint.errors import NotFoundError
from forensic_checkpoint.k8s._rest import MERGE_PATCH, custom_path, request_json, valid_items
from forensic_checkpoint.k8s.client import ApiClient

_CRD = ForensicCheckpoint.crd


class ForensicCheckpoints:
    """Reads and writes of ForensicCheckpoints, bound to one client (and so to one identity)."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def get(self, namespace: str, name: str) -> ForensicCheckpoint | None:
        """The object, or ``None`` if there is none of that name."""
        try:
            return self.read(namespace, name)
        except NotFoundError:
            return None

    def read(self, namespace: str, name: str) -> ForensicCheckpoint:
        """The object; ``NotFoundError`` (with the API server's message) if there is none."""
        raw = request_json(self._api, "GET", custom_path(_CRD, namespace=namespace, name=name))
        return ForensicCheckpoint.model_validate(raw)

    def list(self, *, namespace: str = "", label_selector: str = "") -> list[ForensicCheckpoint]:
        """Every object (of ``namespace``, or of all namespaces), optionally by label; one that
        does not parse is logged and left out rather than failing the whole list."""
        query = {"labelSelector": label_selector} if label_selector else None
        raw = request_json(self._api, "GET", custom_path(_CRD, namespace=namespace), query=query)
        return valid_items(ForensicCheckpoint, raw)

    def create(self, checkpoint: ForensicCheckpoint) -> ForensicCheckpoint:
        """Create it (``metadata.generateName`` works) and return it as stored; raises
        ``ConflictError`` when an object of that name exists."""
        namespace = str(checkpoint.metadata.get("namespace", ""))
        created = request_json(
            self._api, "POST", custom_path(_CRD, namespace=namespace), body=checkpoint.to_kube()
        )
        return ForensicCheckpoint.model_validate(created)

    def write_status(
        self,
        namespace: str,
        name: str,
        status: ForensicCheckpointStatus,
        *,
        with_custody: bool = False,
    ) -> None:
        """Replace the status fields the operator owns (a merge patch on ``/status``).

        Top-level fields that became unset are sent as ``null`` so the merge removes them;
        lists are replaced whole (JSON merge patch has no list merging for custom resources).
        ``custody`` is sent only ``with_custody`` (the caller appended to it), and then whole:
        the CRD's CEL rules refuse a list that lost or changed an entry, so a stale copy fails
        the patch (422) instead of rewriting the chain.
        """
        body: dict[str, Any] = status.to_kube()
        for field_name, info in ForensicCheckpointStatus.model_fields.items():
            alias = info.alias or field_name
            if alias not in body:
                body[alias] = None
        if not with_custody:
            body.pop("custody", None)
        request_json(
            self._api,
            "PATCH",
            custom_path(_CRD, namespace=namespace, name=name, subresource="status"),
            body={"status": body},
            content_type=MERGE_PATCH,
        )
