"""Both ways the agents authenticate to kubelets, end to end on a dev cluster:

- a client certificate issued by `kubectl forensic kubelet-cert` through a real
  CertificateSigningRequest, signed by kube-controller-manager's kube-apiserver-client signer;
- the agent ServiceAccount's token, which the kubelet checks with a TokenReview (webhook
  authentication).

Either identity is then authorised by the kubelet's SubjectAccessReview for create
nodes/checkpoint, which only the chart's RBAC grants: before the install the same credential
gets 403, after it the kubelet runs the checkpoint.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import requests
from cryptography import x509

from forensic_checkpoint.cli import kubectl_forensic
from forensic_checkpoint.domain.readiness import PROBE_PATH
from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.deploy import CHART, NAMESPACE

from .chart import NO_POD_HOOKS, helm, run

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

USER = "forensic-checkpoint:agent"
SECRET = "fc-forensic-checkpoint-kubelet-client"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


def post_checkpoint(
    cluster: DevCluster, path: str, *, cert: tuple[Path, Path] | None = None, token: str = ""
) -> requests.Response:
    node = cluster.node("node-1")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{node.url}{path}",
        cert=(str(cert[0]), str(cert[1])) if cert else None,
        headers=headers,
        verify=str(node.serving_ca),
        timeout=30,
    )


def helm_install(cluster: DevCluster, *sets: str) -> None:
    args = ["install", "fc", str(CHART), "--namespace", NAMESPACE, "--create-namespace"]
    for s in sets:
        args += ["--set", s]
    run(helm(), *args, kubeconfig=cluster.kubeconfig)


def helm_uninstall(cluster: DevCluster) -> None:
    run(
        helm(),
        "uninstall",
        "fc",
        "--namespace",
        NAMESPACE,
        "--wait",
        *NO_POD_HOOKS,
        kubeconfig=cluster.kubeconfig,
    )


def test_client_certificate_through_a_csr(install_cluster: DevCluster, tmp_path: Path) -> None:
    c = install_cluster
    api = c.admin_client()
    try:
        access.ensure_namespace(api, NAMESPACE)
        code = kubectl_forensic.main(
            [
                "--kubeconfig",
                str(c.kubeconfig),
                "kubelet-cert",
                "-n",
                NAMESPACE,
                "--secret",
                SECRET,
                "--user",
                USER,
                "--days",
                "7",
            ]
        )
        assert code == 0
        secret = apiserver.request(api, "GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}")
        csrs = apiserver.request(api, "GET", CSR_PATH)["items"]
    finally:
        close(api)
    assert secret["type"] == "kubernetes.io/tls"
    assert not [r for r in csrs if r["metadata"]["name"].startswith(SECRET)], "CSR left behind"
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    crt.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    key.write_bytes(base64.b64decode(secret["data"]["tls.key"]))
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={USER}"
    issuer_ca = x509.load_pem_x509_certificate(c.ca_file.read_bytes())
    assert cert.issuer == issuer_ca.subject  # the kube-apiserver-client signer: the cluster CA

    # Authenticated, but nothing grants the user create nodes/checkpoint yet.
    denied = post_checkpoint(c, PROBE_PATH, cert=(crt, key))
    assert denied.status_code == 403
    assert f"user={USER}" in denied.text

    helm_install(c)
    try:
        probe = post_checkpoint(c, PROBE_PATH, cert=(crt, key))
        assert (probe.status_code, probe.text) == (404, "pod does not exist")
        c.create_running_pod("default", "counter-cert", "node-1")
        done = post_checkpoint(c, "/checkpoint/default/counter-cert/app", cert=(crt, key))
        assert done.status_code == 200, done.text
        (archive,) = json.loads(done.text)["items"]
        assert Path(archive).parent == c.node("node-1").checkpoint_dir
    finally:
        helm_uninstall(c)
    assert post_checkpoint(c, PROBE_PATH, cert=(crt, key)).status_code == 403


def test_service_account_token_with_webhook_authentication(install_cluster: DevCluster) -> None:
    c = install_cluster
    helm_install(c, "kubelet.authMode=token")
    api = c.admin_client()
    try:
        token = access.request_token(api, NAMESPACE, "fc-forensic-checkpoint-agent")
        access.create_service_account(api, NAMESPACE, "bystander")
        bystander = access.request_token(api, NAMESPACE, "bystander")
    finally:
        close(api)
    try:
        probe = post_checkpoint(c, PROBE_PATH, token=token)
        assert (probe.status_code, probe.text) == (404, "pod does not exist")
        other = post_checkpoint(c, PROBE_PATH, token=bystander)
        assert other.status_code == 403
        assert post_checkpoint(c, PROBE_PATH, token="not-a-token").status_code == 401
    finally:
        helm_uninstall(c)
