"""`forensic-checkpoint uninstall-cleanup` against a real API server, with the token and the
rights of the chart's pre-delete hook (its rendered ServiceAccount and roles, and the release's
admission policy): it stops the agents' DaemonSet, then deletes every ForensicNode, per-node
kubelet client grant and CSR of the project's signers, and nothing else. (The dev cluster runs
no pod, so the hook Job itself runs in e2e/steps.sh on the real node.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml

from forensic_checkpoint.agent.identity.keys import new_key, request_pem
from forensic_checkpoint.agent_identity import SIGNER_NAME
from forensic_checkpoint.cli.uninstall_cleanup import clean_up
from forensic_checkpoint.domain.identity.profiles import Subject
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.certificates import CertificateSigningRequests
from forensic_checkpoint.k8s.client import ApiClient, close, from_token
from forensic_checkpoint.k8s.nodes import ForensicNodes, Nodes
from forensic_checkpoint.k8s.rbac import KubeletClientGrants
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.deploy import CHART, NAMESPACE

from .chart import NO_POD_HOOKS, documents, helm, kubectl, run, template

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RELEASE = "fc"
NAME = "fc-forensic-checkpoint-uninstall-cleanup"
DAEMONSET = "fc-forensic-checkpoint-agent"
FOREIGN_SIGNER = "kubernetes.io/kube-apiserver-client"
ADMISSION = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def k(cluster: DevCluster, *args: str, stdin: str | None = None) -> str:
    return run(kubectl(), *args, kubeconfig=cluster.kubeconfig, stdin=stdin).stdout


def csr(api: ApiClient, name: str, signer: str) -> None:
    pem = request_pem(new_key(), Subject(common_name=name, client=True))
    CertificateSigningRequests(api).create(
        name,
        pem,
        signer=signer,
        usages=["digital signature", "client auth"],
        expiration_seconds=3600,
        labels={},
    )


@pytest.fixture
def hook_client(install_cluster: DevCluster) -> Iterator[ApiClient]:
    """The chart installed, its pre-delete hook's ServiceAccount and roles created as Helm
    creates them, and a client with that ServiceAccount's token."""
    c = install_cluster
    run(helm(), "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
        kubeconfig=c.kubeconfig)  # fmt: skip
    hook = documents(template(show_only="templates/uninstall-cleanup.yaml"))
    # The Job would never run here (no pod runs); the policy came with the release.
    rbac = yaml.safe_dump_all(
        [d for d in hook if d["kind"] not in ("Job", *ADMISSION)], sort_keys=False
    )
    k(c, "apply", "-f", "-", stdin=rbac)
    token = k(c, "create", "token", NAME, "-n", NAMESPACE).strip()
    api = from_token(c.server, token, ca_file=c.ca_file)
    try:
        yield api
    finally:
        close(api)
        k(c, "delete", "-f", "-", "--ignore-not-found", stdin=rbac)
        run(helm(), "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", *NO_POD_HOOKS,
            kubeconfig=c.kubeconfig)  # fmt: skip


def refused(action: object) -> bool:
    try:
        action()  # type: ignore[operator]
    except ClusterError as exc:
        return exc.status_code == 403 or "uninstall-cleanup policy" in exc.message
    return False


def test_it_removes_what_the_agents_and_operator_wrote_and_nothing_else(
    install_cluster: DevCluster, hook_client: ApiClient
) -> None:
    c = install_cluster
    admin = c.admin_client()
    try:
        node = Nodes(admin).get("node-1")
        assert node is not None
        # What an agent and the operator (csr mode) leave, all owned by the Node.
        ForensicNodes(admin).ensure(
            "node-1",
            labels={"app.kubernetes.io/part-of": "forensic-checkpoint"},
            owner_uid=node.uid,
        )
        KubeletClientGrants(admin).ensure(node)
        csr(admin, "fc-test-agent-serving", SIGNER_NAME)
        # Not ours: an administrator's role, labelled like a grant, and another signer's CSR.
        k(c, "create", "clusterrole", "admins-own", "--verb=get", "--resource=pods")
        k(c, "label", "clusterrole", "admins-own", "forensic-checkpoint.dev/kubelet-client-node=x")
        csr(admin, "fc-test-foreign", FOREIGN_SIGNER)

        # The release's policy holds before the hook runs: nothing but the project's objects.
        grants = KubeletClientGrants(hook_client)
        csrs = CertificateSigningRequests(hook_client)
        deadline = time.monotonic() + 30
        while not refused(lambda: grants.delete("clusterroles", "admins-own")):
            assert time.monotonic() < deadline, "the policy let the hook delete admins-own"
            time.sleep(0.5)
        assert refused(lambda: csrs.delete("fc-test-foreign"))
        k(c, "label", "clusterrole", "admins-own", "forensic-checkpoint.dev/kubelet-client-node-")

        lines = clean_up(hook_client, NAMESPACE, DAEMONSET, timeout=60)

        assert f"daemonset {NAMESPACE}/{DAEMONSET}: deleted, its pods are gone" in lines
        assert "forensicnode node-1: deleted" in lines
        assert "clusterrole forensic-checkpoint:kubelet-client:node-1: deleted" in lines
        assert "clusterrolebinding forensic-checkpoint:kubelet-client:node-1: deleted" in lines
        assert any(
            line.startswith("certificatesigningrequest fc-test-agent-serving") for line in lines
        )
        assert k(c, "get", "daemonsets", "-n", NAMESPACE, "-o", "name") == ""
        assert k(c, "get", "forensicnodes", "-o", "name") == ""
        assert "kubelet-client:node-1" not in k(
            c, "get", "clusterroles,clusterrolebindings", "-o", "name"
        )
        names = k(c, "get", "csr", "-o", "name")
        assert "fc-test-agent-serving" not in names and "fc-test-foreign" in names
        assert "admins-own" in k(c, "get", "clusterroles", "-o", "name")
        # The operator was not stopped, and the rest of the release is Helm's to delete.
        assert "deployment.apps/fc-forensic-checkpoint-operator" in k(
            c, "get", "deployments", "-n", NAMESPACE, "-o", "name"
        )
        # A second run (a retried Job) finds nothing left and succeeds.
        assert clean_up(hook_client, NAMESPACE, DAEMONSET, timeout=60) == [
            "uninstall-cleanup: 0 objects removed"
        ]
    finally:
        k(c, "delete", "clusterrole", "admins-own", "--ignore-not-found")
        k(c, "delete", "csr", "fc-test-foreign", "--ignore-not-found")
        close(admin)
