"""k8s.client builders, the repositories' error translation and k8s.reviews against the real
API server of the dev cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint, ForensicCheckpointStatus
from forensic_checkpoint.errors import ClusterError, ConfigError, ConflictError, NotFoundError
from forensic_checkpoint.k8s import client as kube
from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
from forensic_checkpoint.k8s.reviews import subject_access_review, token_review
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access
from forensic_checkpoint_dev.cluster.testing import ClusterHandle

pytestmark = pytest.mark.cluster

SELF_REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def whoami(api: kube.ApiClient) -> tuple[str, list[str]]:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    info = apiserver.request(api, "POST", SELF_REVIEW, body=body)["status"]["userInfo"]
    return info["username"], info.get("groups", [])


def test_token_and_certificate_clients(dev_cluster: ClusterHandle) -> None:
    dev_cluster.create_service_account("client-test")
    token = dev_cluster.request_token("client-test")
    api = kube.from_token(dev_cluster.server, token, ca_file=dev_cluster.ca_file)
    try:
        user, groups = whoami(api)
        assert user == dev_cluster.service_account_user("client-test")
        assert "system:serviceaccounts" in groups
    finally:
        kube.close(api)
    if not dev_cluster.local:
        return
    cert = dev_cluster.issue_client_certificate("cert-user", ["team-a", "team-b"])
    api = kube.from_client_certificate(
        dev_cluster.server, cert.cert, cert.key, ca_file=dev_cluster.ca_file
    )
    try:
        user, groups = whoami(api)
        assert user == "cert-user"
        assert {"team-a", "team-b"} <= set(groups)
    finally:
        kube.close(api)


def test_in_cluster_and_environment_resolution(
    dev_cluster: ClusterHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if dev_cluster.ca_file is None:
        pytest.skip("needs the cluster CA file")
    dev_cluster.create_service_account("in-pod")
    (tmp_path / "token").write_text(dev_cluster.request_token("in-pod"))
    (tmp_path / "ca.crt").write_bytes(dev_cluster.ca_file.read_bytes())
    host, port = dev_cluster.server.removeprefix("https://").rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    api = kube.in_cluster(service_account_dir=tmp_path)
    try:
        assert whoami(api)[0] == dev_cluster.service_account_user("in-pod")
    finally:
        kube.close(api)
    monkeypatch.setenv("KUBECONFIG", str(dev_cluster.kubeconfig))
    api = kube.from_environment()
    try:
        assert "system:masters" in whoami(api)[1] or not dev_cluster.local
    finally:
        kube.close(api)
    with pytest.raises(ConfigError, match="cannot load kubeconfig"):
        kube.from_kubeconfig(tmp_path / "missing")


def test_the_repositories_translate_the_api_servers_errors(dev_cluster: ClusterHandle) -> None:
    api = dev_cluster.admin_client()
    ns = dev_cluster.namespace
    checkpoints = ForensicCheckpoints(api)
    with pytest.raises(NotFoundError) as missing:
        checkpoints.read(ns, "absent")
    assert missing.value.status_code == 404
    assert '"absent" not found' in missing.value.message
    twice = ForensicCheckpoint.model_validate(
        {"metadata": {"name": "twice", "namespace": ns}, "spec": {"podName": "web"}}
    )
    checkpoints.create(twice)
    with pytest.raises(ConflictError):
        checkpoints.create(twice)
    checkpoints.write_status(ns, "twice", ForensicCheckpointStatus(message="merged"))
    stored = checkpoints.read(ns, "twice").status
    assert stored is not None and stored.message == "merged"
    unreachable = kube.from_token("https://127.0.0.1:1", "t", ca_file=dev_cluster.ca_file)
    unreachable.configuration.retries = 0
    with pytest.raises(ClusterError, match="unreachable"):
        ForensicCheckpoints(unreachable).read(ns, "twice")
    kube.close(unreachable)


def test_token_review_audiences(dev_cluster: ClusterHandle) -> None:
    api = dev_cluster.admin_client()
    dev_cluster.create_service_account("audience")
    scoped = dev_cluster.request_token("audience", audiences=["forensic-agent"])
    result = token_review(api, scoped, audiences=["forensic-agent"])
    authenticated, username, groups, uid = result  # unpacks as the 4-tuple others rely on
    assert authenticated
    assert username == dev_cluster.service_account_user("audience")
    assert f"system:serviceaccounts:{dev_cluster.namespace}" in groups
    assert uid
    # the API server's own audience does not accept a token minted for another one
    assert not token_review(api, scoped).authenticated
    assert token_review(api, "garbage") == (False, "", (), "")


def test_subject_access_review(dev_cluster: ClusterHandle) -> None:
    api = dev_cluster.admin_client()
    ns = dev_cluster.namespace
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    apiserver.request(api, "POST", f"{RBAC}/namespaces/{ns}/roles", body=role)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [access.user("reader")],
    }
    apiserver.request(api, "POST", f"{RBAC}/namespaces/{ns}/rolebindings", body=binding)
    assert subject_access_review(api, "reader", [], "get", "pods", namespace=ns)
    assert not subject_access_review(api, "reader", [], "get", "pods", namespace="default")
    assert not subject_access_review(api, "reader", [], "delete", "pods", namespace=ns)
    assert subject_access_review(api, "anyone", ["system:masters"], "create", "nodes", "checkpoint")
    assert not subject_access_review(api, "anyone", [], "create", "nodes", "checkpoint", "node-1")
