"""Alert provenance cannot be forged (issue 15, item 6), proven on a real API server.

The chart's admission policy and aggregated roles are taken from deploy/forensic-checkpoint.yaml
(rendered from the chart) and applied to the dev cluster for this module only. A namespace
editor, who may create ForensicCheckpoints through the aggregated ``edit`` role, then tries to
create one with ``spec.reason.alert`` (custody would record an ``Alert`` actor) or to name
someone else in ``requested-by``; the receiver's identity (the operator's, deploy/rbac) may.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from tests.identities import OPERATOR_USER, operator_client, user_client

from forensic_checkpoint.api.base import API_VERSION
from forensic_checkpoint.domain.evidence.checkpoint_custody import REQUESTED_BY_ANNOTATION
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.client import ApiClient, close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster.testing import ClusterHandle
from forensic_checkpoint_dev.deploy import DEPLOY_MANIFEST

pytestmark = pytest.mark.cluster

EDITOR = "fc-test-editor"
REFUSED = "may be set only by the alert receiver"
NOT_CREATOR = "must name the creating user"
_ADMISSION = "/apis/admissionregistration.k8s.io/v1"
_PATHS = {
    "ValidatingAdmissionPolicy": f"{_ADMISSION}/validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": f"{_ADMISSION}/validatingadmissionpolicybindings",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
}


def _chart_objects() -> list[dict[str, Any]]:
    """The alert-provenance policy and its binding, and the roles aggregated into edit/view."""
    wanted = []
    for doc in yaml.safe_load_all(DEPLOY_MANIFEST.read_text(encoding="utf-8")):
        if not doc:
            continue
        name, labels = doc["metadata"]["name"], doc["metadata"].get("labels") or {}
        if (doc["kind"].startswith("ValidatingAdmissionPolicy") and "alert-provenance" in name) or (
            doc["kind"] == "ClusterRole" and "rbac.authorization.k8s.io/aggregate-to-edit" in labels
        ):
            wanted.append(doc)
    assert {d["kind"] for d in wanted} == set(_PATHS), "the chart no longer renders them"
    return wanted


def _delete(admin: ApiClient, doc: dict[str, Any]) -> None:
    try:
        apiserver.request(admin, "DELETE", f"{_PATHS[doc['kind']]}/{doc['metadata']['name']}")
    except ClusterError as exc:
        if exc.status_code != 404:
            raise


def _checkpoint(name: str, *, alert: bool = False, requested_by: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "ForensicCheckpoint",
        "metadata": {"name": name, "annotations": {}},
        "spec": {"podName": "web"},
    }
    if alert:
        body["spec"]["reason"] = {
            "text": "forged",
            "alert": {"source": "alertmanager", "name": "Forged", "fingerprint": "f00d"},
        }
    if requested_by:
        body["metadata"]["annotations"][REQUESTED_BY_ANNOTATION] = requested_by
    return body


def _create(api: ApiClient, handle: ClusterHandle, body: dict[str, Any], dry: bool = False) -> Any:
    path = f"/apis/{API_VERSION}/namespaces/{handle.namespace}/forensiccheckpoints"
    return apiserver.request(api, "POST", path, body=body, query={"dryRun": "All"} if dry else None)


def _eventually_refused(api: ApiClient, handle: ClusterHandle, body: dict[str, Any]) -> None:
    """Wait until the API server enforces the new policy (its informer syncs within seconds),
    with dry runs so that nothing is created meanwhile."""
    deadline = time.monotonic() + 60
    while True:
        try:
            _create(api, handle, body, dry=True)
        except ClusterError as exc:
            if REFUSED in exc.message:
                return
            # The editor's aggregated role may not be folded into "edit" yet.
            assert exc.status_code == 403, exc.message
        assert time.monotonic() < deadline, "the admission policy was not enforced in 60 s"
        time.sleep(0.5)


def _eventually_admitted(api: ApiClient, handle: ClusterHandle, body: dict[str, Any]) -> None:
    """Wait until the removed policy is no longer enforced, so the modules after this one (which
    create alert references as other users) see the cluster as before."""
    deadline = time.monotonic() + 60
    while True:
        try:
            _create(api, handle, body, dry=True)
            return
        except ClusterError as exc:
            assert REFUSED in exc.message, exc.message
        assert time.monotonic() < deadline, "the admission policy was still enforced after 60 s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def editor(local: ClusterHandle) -> Iterator[ApiClient]:
    """A namespace editor (built-in ``edit``, with the chart's aggregated role), under the
    chart's alert-provenance policy; both are removed after the module."""
    admin = local.admin_client()
    objects = _chart_objects()
    for doc in objects:
        _delete(admin, doc)
        apiserver.request(admin, "POST", _PATHS[doc["kind"]], body=doc)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": EDITOR},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": EDITOR}],
    }
    rolebindings = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{local.namespace}/rolebindings"
    apiserver.request(admin, "POST", rolebindings, body=binding)
    api = user_client(local, EDITOR)
    try:
        _eventually_refused(api, local, _checkpoint("probe", alert=True))
        yield api
    finally:
        close(api)
        apiserver.request(admin, "DELETE", f"{rolebindings}/{EDITOR}")
        for doc in reversed(objects):
            _delete(admin, doc)
        _eventually_admitted(admin, local, _checkpoint("probe", alert=True))


@pytest.fixture(scope="module")
def receiver(local: ClusterHandle) -> Iterator[ApiClient]:
    api = operator_client(local)
    try:
        yield api
    finally:
        close(api)


def _name() -> str:
    return f"prov-{secrets.token_hex(3)}"


def test_a_namespace_editor_cannot_create_alert_provenance(
    local: ClusterHandle, editor: ApiClient
) -> None:
    with pytest.raises(ClusterError, match=REFUSED) as refused:
        _create(editor, local, _checkpoint(_name(), alert=True))
    assert refused.value.status_code == 403
    assert f"not by {EDITOR}" in refused.value.message
    assert "alert-provenance policy" in refused.value.message
    # Not even by claiming to be the receiver.
    with pytest.raises(ClusterError, match=REFUSED):
        _create(editor, local, _checkpoint(_name(), alert=True, requested_by=OPERATOR_USER))
    # The editor's own captures still go through, named as the editor or not at all.
    _create(editor, local, _checkpoint(_name()))
    _create(editor, local, _checkpoint(_name(), requested_by=EDITOR))


def test_requested_by_names_the_creator_and_never_changes(
    local: ClusterHandle, editor: ApiClient
) -> None:
    with pytest.raises(ClusterError, match=NOT_CREATOR):
        _create(editor, local, _checkpoint(_name(), requested_by="alice@example.com"))
    name = _name()
    _create(editor, local, _checkpoint(name, requested_by=EDITOR))
    path = f"/apis/{API_VERSION}/namespaces/{local.namespace}/forensiccheckpoints/{name}"
    for value in ("alice@example.com", None):
        patch = {"metadata": {"annotations": {REQUESTED_BY_ANNOTATION: value}}}
        with pytest.raises(ClusterError, match=NOT_CREATOR):
            apiserver.request(editor, "PATCH", path, body=patch)
    # Other metadata stays the editor's to change.
    apiserver.request(editor, "PATCH", path, body={"metadata": {"labels": {"case": "42"}}})


def test_the_receivers_identity_creates_alert_provenance(
    local: ClusterHandle, editor: ApiClient, receiver: ApiClient
) -> None:
    name = _name()
    created = _create(receiver, local, _checkpoint(name, alert=True, requested_by=OPERATOR_USER))
    assert created["spec"]["reason"]["alert"]["name"] == "Forged"
    # An editor may still label the receiver's capture: the alert reference is unchanged.
    path = f"/apis/{API_VERSION}/namespaces/{local.namespace}/forensiccheckpoints/{name}"
    apiserver.request(editor, "PATCH", path, body={"metadata": {"labels": {"case": "42"}}})
