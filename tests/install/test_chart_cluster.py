"""The chart against a real API server: server-side dry runs of every value set, and a real
`helm install`, `upgrade` and `uninstall` that create, change and remove every object, with
the granted permissions checked by the API server's own authorizer (`kubectl auth can-i`)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.deploy import CHART, NAMESPACE

from .chart import CI_VALUES, NO_POD_HOOKS, documents, helm, kubectl, run, template

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DATA = Path(__file__).parent / "data"
RELEASE = "fc"
OPERATOR_SA = f"system:serviceaccount:{NAMESPACE}:fc-forensic-checkpoint-operator"
AGENT_SA = f"system:serviceaccount:{NAMESPACE}:fc-forensic-checkpoint-agent"
KUBELET_USER = "forensic-checkpoint:agent"


def k(cluster: DevCluster, *args: str, stdin: str | None = None) -> str:
    return run(kubectl(), *args, kubeconfig=cluster.kubeconfig, stdin=stdin).stdout


def h(cluster: DevCluster, *args: str) -> str:
    return run(helm(), *args, kubeconfig=cluster.kubeconfig).stdout


def can_i(cluster: DevCluster, who: str, *args: str) -> bool:
    """The API server's answer for `who` (exit 1 with "no" is an answer, not a failure)."""
    result = subprocess.run(
        [
            str(kubectl()),
            "auth",
            "can-i",
            *args,
            f"--as={who}",
            f"--kubeconfig={cluster.kubeconfig}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.5)


def ensure_namespaces(cluster: DevCluster, *names: str) -> None:
    existing = k(cluster, "get", "namespaces", "-o", "name").split()
    for name in names:
        if f"namespace/{name}" not in existing:
            k(cluster, "create", "namespace", name)


def existing_objects(cluster: DevCluster, manifest: str) -> set[str]:
    out = k(cluster, "get", "-f", "-", "-o", "name", "--ignore-not-found", stdin=manifest)
    return set(out.split())


def checkpoint(namespace: str, name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "forensic-checkpoint.dev/v1alpha1",
            "kind": "ForensicCheckpoint",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podName": "counter", "analysis": {"searches": ["secret"]}},
        }
    )


@pytest.mark.parametrize(
    "values", [None, *CI_VALUES], ids=["defaults", *(p.stem for p in CI_VALUES)]
)
def test_every_value_set_applies_with_server_dry_run(
    install_cluster: DevCluster, values: Path | None
) -> None:
    ensure_namespaces(install_cluster, NAMESPACE, "payments", "web")
    k(install_cluster, "apply", "--server-side", "-f", str(DATA / "servicemonitor-crd.yaml"))
    k(
        install_cluster,
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
    )
    manifest = template(*([values] if values else []))
    out = k(
        install_cluster, "apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=manifest
    )
    applied = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(documents(manifest))


def test_install_upgrade_uninstall(install_cluster: DevCluster) -> None:
    c = install_cluster
    ensure_namespaces(c, "payments", "web", "denied")
    h(c, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace")
    manifest = h(c, "get", "manifest", RELEASE, "--namespace", NAMESPACE)
    expected = {f"{d['kind']}/{d['metadata']['name']}" for d in documents(manifest)}
    present = existing_objects(c, manifest)
    assert len(present) == len(expected) >= 20
    for crd in ("forensiccheckpoints", "forensicnodes", "forensiccapturepolicies"):
        k(c, "wait", "--for=condition=Established", f"crd/{crd}.forensic-checkpoint.dev")

    # Least privilege, as the API server's authorizer decides it.
    assert can_i(
        c,
        OPERATOR_SA,
        "patch",
        "forensiccheckpoints.forensic-checkpoint.dev",
        "--subresource=status",
        "-n",
        "web",
    )
    assert can_i(c, OPERATOR_SA, "get", "pods", "-n", "web")
    assert can_i(c, AGENT_SA, "create", "nodes", "--subresource=checkpoint")
    assert can_i(c, KUBELET_USER, "create", "nodes", "--subresource=checkpoint")
    for who in (OPERATOR_SA, AGENT_SA, KUBELET_USER):
        assert not can_i(c, who, "get", "secrets", "-A")
        assert not can_i(c, who, "get", "secrets", "-n", NAMESPACE)
        assert not can_i(c, who, "get", "nodes", "--subresource=proxy")
        assert not can_i(c, who, "create", "pods", "--subresource=exec", "-n", "web")
    assert not can_i(c, OPERATOR_SA, "create", "nodes", "--subresource=checkpoint")
    assert not can_i(c, KUBELET_USER, "get", "nodes")
    assert not can_i(c, AGENT_SA, "list", "pods", "-A")
    # Agent certificates (csr mode): the agent asks, only the operator approves and signs.
    csr = "certificatesigningrequests.certificates.k8s.io"
    assert can_i(c, AGENT_SA, "create", csr)
    assert not can_i(c, AGENT_SA, "update", csr, "--subresource=approval")
    assert can_i(c, OPERATOR_SA, "update", csr, "--subresource=approval")
    assert not can_i(c, OPERATOR_SA, "create", csr)

    # Aggregated roles: the controller manager folds them into view/edit.
    k(c, "create", "rolebinding", "viewer", "--clusterrole=view", "--user=viewer", "-n", "web")
    k(c, "create", "rolebinding", "editor", "--clusterrole=edit", "--user=editor", "-n", "web")
    eventually(
        lambda: can_i(
            c, "viewer", "list", "forensiccheckpoints.forensic-checkpoint.dev", "-n", "web"
        )
    )
    eventually(
        lambda: can_i(
            c, "editor", "create", "forensiccheckpoints.forensic-checkpoint.dev", "-n", "web"
        )
    )
    assert not can_i(
        c, "viewer", "create", "forensiccheckpoints.forensic-checkpoint.dev", "-n", "web"
    )
    assert not can_i(
        c, "editor", "list", "forensiccheckpoints.forensic-checkpoint.dev", "-n", "payments"
    )

    tls_before = k(
        c,
        "get",
        "secret",
        "fc-forensic-checkpoint-agent-ca",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.data.ca\\.key}",
    )

    # Upgrade 1: a deny list becomes an admission policy the API server enforces.
    h(
        c,
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--set",
        "captureNamespaces.deny={denied}",
    )
    tls_after = k(
        c,
        "get",
        "secret",
        "fc-forensic-checkpoint-agent-ca",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.data.ca\\.key}",
    )
    assert tls_after == tls_before, "an upgrade must keep the agents' CA"

    def refused_in_denied() -> bool:
        result = subprocess.run(
            [
                str(kubectl()),
                "create",
                "--dry-run=server",
                "-f",
                "-",
                f"--kubeconfig={c.kubeconfig}",
            ],
            input=checkpoint("denied", "probe"),
            capture_output=True,
            text=True,
            check=False,
        )
        return result.returncode != 0 and "deny list" in result.stderr

    eventually(refused_in_denied)
    k(c, "create", "-f", "-", stdin=checkpoint("web", "allowed"))

    # Upgrade 2: an allow list replaces the cluster-wide operator grants with per-namespace Roles.
    h(
        c,
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--set",
        "captureNamespaces.allow={web}",
    )
    assert can_i(c, OPERATOR_SA, "get", "pods", "-n", "web")
    assert not can_i(c, OPERATOR_SA, "get", "pods", "-n", "payments")
    assert not can_i(
        c, OPERATOR_SA, "list", "forensiccheckpoints.forensic-checkpoint.dev", "-n", "payments"
    )
    manifest2 = h(c, "get", "manifest", RELEASE, "--namespace", NAMESPACE)
    assert "role.rbac.authorization.k8s.io/fc-forensic-checkpoint-operator" in existing_objects(
        c, manifest2
    )
    args = json.loads(
        k(c, "get", "deployment", "fc-forensic-checkpoint-operator", "-n", NAMESPACE, "-o", "json")
    )["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=web" in args

    # Uninstall: everything goes except the CRDs, and with them the evidence records.
    h(c, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", *NO_POD_HOOKS)
    left = existing_objects(c, manifest) | existing_objects(c, manifest2)
    assert left == {
        "customresourcedefinition.apiextensions.k8s.io/forensiccapturepolicies.forensic-checkpoint.dev",
        "customresourcedefinition.apiextensions.k8s.io/forensiccheckpoints.forensic-checkpoint.dev",
        "customresourcedefinition.apiextensions.k8s.io/forensicnodes.forensic-checkpoint.dev",
    }
    assert "allowed" in k(c, "get", "forensiccheckpoints", "-n", "web", "-o", "name")


def _pod_from(docs: list[dict[str, object]], kind: str, namespace: str) -> str:
    workload = next(d for d in docs if d["kind"] == kind)
    template_spec = workload["spec"]["template"]  # type: ignore[index]
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"psa-{kind.lower()}", "namespace": namespace},
            "spec": template_spec["spec"],
        }
    )


def test_pod_security_levels(install_cluster: DevCluster) -> None:
    """Pod Security admission, enforced by the API server on real pods: the operator meets
    "restricted"; the agent (hostPath) is refused by "baseline" and needs "privileged"."""
    c = install_cluster
    docs = documents(template(namespace="psa-restricted"))
    for level in ("restricted", "baseline", "privileged"):
        ns = f"psa-{level}"
        ensure_namespaces(c, ns)
        k(c, "label", "namespace", ns, f"pod-security.kubernetes.io/enforce={level}", "--overwrite")
        for sa in ("fc-forensic-checkpoint-operator", "fc-forensic-checkpoint-agent"):
            k(c, "apply", "-f", "-", stdin=k(c, "create", "serviceaccount", sa, "-n", ns,
              "--dry-run=client", "-o", "yaml"))  # fmt: skip
    k(
        c,
        "create",
        "--dry-run=server",
        "-f",
        "-",
        stdin=_pod_from(docs, "Deployment", "psa-restricted"),
    )
    refused = subprocess.run(
        [str(kubectl()), "create", "--dry-run=server", "-f", "-", f"--kubeconfig={c.kubeconfig}"],
        input=_pod_from(docs, "DaemonSet", "psa-baseline"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr and "hostPath" in refused.stderr
    k(
        c,
        "create",
        "--dry-run=server",
        "-f",
        "-",
        stdin=_pod_from(docs, "DaemonSet", "psa-privileged"),
    )


def test_upgrade_changes_the_crds_and_reinstall_adopts_kept_ones(
    install_cluster: DevCluster, tmp_path: Path
) -> None:
    """Why the CRDs are templates: `helm upgrade` carries a changed schema to the API server
    (Helm never upgrades a chart's crds/). And CRDs kept by an uninstall are taken over again by
    a new install of the release."""
    import shutil

    import yaml

    c = install_cluster
    h(c, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace")
    newer = tmp_path / "forensic-checkpoint"
    shutil.copytree(CHART, newer)
    crd_file = newer / "files" / "crds" / "forensiccheckpoints.forensic-checkpoint.dev.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    status["properties"]["upgradeProbe"] = {"type": "string", "description": "added by v2"}
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))
    path = (
        "{.spec.versions[0].schema.openAPIV3Schema.properties.status"
        ".properties.upgradeProbe.description}"
    )
    crd_name = "crd/forensiccheckpoints.forensic-checkpoint.dev"
    assert k(c, "get", crd_name, "-o", f"jsonpath={path}") == ""
    h(c, "upgrade", RELEASE, str(newer), "--namespace", NAMESPACE)
    assert k(c, "get", crd_name, "-o", f"jsonpath={path}") == "added by v2"
    h(c, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE)  # and back
    assert k(c, "get", crd_name, "-o", f"jsonpath={path}") == ""
    h(c, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", *NO_POD_HOOKS)


def test_a_release_of_another_name_takes_over_kept_crds_as_documented(
    install_cluster: DevCluster, tmp_path: Path
) -> None:
    """docs/install.md ("CRDs and upgrades"): after an uninstall keeps the CRDs, an install
    under another name is refused for their ownership, and the documented annotation hands
    them over. The command is taken from the docs, so the two cannot drift."""
    import re

    c = install_cluster
    h(c, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace")
    h(c, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", *NO_POD_HOOKS)
    other, other_ns = "ir", "incident-response"
    install = ["install", other, str(CHART), "--namespace", other_ns, "--create-namespace"]
    refused = subprocess.run(
        [str(helm()), *install, f"--kubeconfig={c.kubeconfig}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert refused.returncode != 0
    assert "invalid ownership metadata" in refused.stderr, refused.stderr
    docs = (CHART.parents[1] / "docs" / "install.md").read_text()
    [script] = [
        block
        for block in re.findall(r"```sh\n(.*?)```", docs, re.S)
        if "meta.helm.sh/release-name=ir" in block
    ]
    # HOME: kubectl keeps its discovery cache there (without one, in the working directory).
    env = {
        "PATH": f"{kubectl().parent}:/usr/bin:/bin",
        "KUBECONFIG": str(c.kubeconfig),
        "HOME": str(tmp_path),
    }
    subprocess.run(["bash", "-euc", script], env=env, check=True, timeout=60)
    try:
        h(c, *install)  # no pod runs here (no runtime): --wait would time out
        h(c, "uninstall", other, "--namespace", other_ns, "--wait", *NO_POD_HOOKS)
    finally:  # the next install of RELEASE here adopts them again
        for crd in ("forensiccheckpoints", "forensicnodes", "forensiccapturepolicies"):
            k(
                c,
                "annotate",
                "--overwrite",
                f"crd/{crd}.forensic-checkpoint.dev",
                f"meta.helm.sh/release-name={RELEASE}",
                f"meta.helm.sh/release-namespace={NAMESPACE}",
            )
