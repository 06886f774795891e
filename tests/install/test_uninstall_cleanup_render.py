"""The chart's uninstall clean-up (templates/uninstall-cleanup.yaml), as rendered: a pre-delete
hook only (never on install or upgrade), run with the project's own image and CLI, least
privilege, removed by its delete policy, and absent where no Helm runs hooks (deploy/)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from forensic_checkpoint.cli import uninstall_cleanup
from forensic_checkpoint_dev.deploy import DEPLOY_MANIFEST

from .chart import by_kind, documents, one, template

# `helm template` is a subprocess (about 0.5 s a render).
pytestmark = pytest.mark.slow

NAME = "fc-forensic-checkpoint-uninstall-cleanup"
HOOK = "helm.sh/hook"
SA_USER = f"system:serviceaccount:forensic-checkpoint:{NAME}"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return documents(template())


def hooks(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if HOOK in (d["metadata"].get("annotations") or {})]


def test_it_is_a_pre_delete_hook_deleted_once_it_succeeded(docs: list[dict[str, Any]]) -> None:
    ours = [d for d in hooks(docs) if d["metadata"]["name"] == NAME]
    kinds = sorted(d["kind"] for d in ours)
    rbac = ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"]
    assert kinds == sorted(["Job", *rbac])
    for doc in ours:
        notes = doc["metadata"]["annotations"]
        # Never pre/post-install or -upgrade: an upgrade keeps every ForensicNode.
        assert notes[HOOK] == "pre-delete", doc["kind"]
        assert set(notes["helm.sh/hook-delete-policy"].split(",")) == {
            "before-hook-creation",
            "hook-succeeded",
        }
        weight = int(notes.get("helm.sh/hook-weight", "0"))
        assert weight == (0 if doc["kind"] == "Job" else -1), "its roles exist before the Job"
    # The only hooks of the chart (with --skip-tests) are these.
    assert {d["metadata"]["name"] for d in hooks(docs)} == {NAME}


def test_the_job_runs_the_cli_with_the_images_least_privileges(docs: list[dict[str, Any]]) -> None:
    job = one(docs, "Job", NAME)
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == NAME and spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    operator = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == operator["image"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "volumes" not in spec and "hostNetwork" not in spec
    # Its arguments parse with the real CLI and name the DaemonSet the chart renders.
    command, *args = container["args"]
    assert command == "uninstall-cleanup"
    parser = argparse.ArgumentParser()
    uninstall_cleanup.add_arguments(parser)
    parsed = parser.parse_args(args)
    assert parsed.agent_daemonset == one(docs, "DaemonSet")["metadata"]["name"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # Its pods carry the release's labels: e2e/steps.sh waits for them to go.
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] == "fc"


def test_its_rbac_is_list_and_delete_of_what_it_cleans_and_its_own_daemonset(
    docs: list[dict[str, Any]],
) -> None:
    cluster_rules = one(docs, "ClusterRole", NAME)["rules"]
    assert cluster_rules == [
        {
            "apiGroups": ["forensic-checkpoint.dev"],
            "resources": ["forensicnodes"],
            "verbs": ["list", "delete"],
        },
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles", "clusterrolebindings"],
            "verbs": ["list", "delete"],
        },
        {
            "apiGroups": ["certificates.k8s.io"],
            "resources": ["certificatesigningrequests"],
            "verbs": ["list", "delete"],
        },
    ]
    (rule,) = one(docs, "Role", NAME)["rules"]
    assert rule == {
        "apiGroups": ["apps"],
        "resources": ["daemonsets"],
        "resourceNames": [one(docs, "DaemonSet")["metadata"]["name"]],
        "verbs": ["get", "delete"],
    }
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        binding = one(docs, kind, NAME)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": NAME, "namespace": "forensic-checkpoint"}
        ]
        assert binding["roleRef"]["name"] == NAME


def test_an_ordinary_policy_narrows_its_deletes_before_the_hook_runs(
    docs: list[dict[str, Any]],
) -> None:
    policy = one(docs, "ValidatingAdmissionPolicy", NAME)
    binding = one(docs, "ValidatingAdmissionPolicyBinding", NAME)
    for doc in (policy, binding):  # part of the release, so in force before any hook runs
        assert HOOK not in (doc["metadata"].get("annotations") or {})
    assert binding["spec"] == {"policyName": NAME, "validationActions": ["Deny"]}
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == f'request.userInfo.username == "{SA_USER}"'
    matched = {
        res
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        for res in rule["resources"]
        if rule["operations"] == ["DELETE"]
    }
    assert matched == {"clusterroles", "clusterrolebindings", "certificatesigningrequests"}
    checks = " ".join(v["expression"] for v in policy["spec"]["validations"])
    assert "forensic-checkpoint:kubelet-client:" in checks
    assert "forensic-checkpoint.dev/kubelet-client-node" in checks
    assert "'forensic-checkpoint.dev/agent-serving', 'forensic-checkpoint.dev/kubelet-client'" in (
        checks
    )


def test_off_renders_none_of_it() -> None:
    docs = documents(template(set_values=["uninstallCleanup.enabled=false"]))
    assert not [d for d in docs if d["metadata"]["name"] == NAME]


def test_the_raw_manifests_hold_no_hook() -> None:
    """`kubectl apply -f deploy/forensic-checkpoint.yaml` would run a hook Job at once (and stop
    the agents): the raw manifests leave it out."""
    docs = documents(DEPLOY_MANIFEST.read_text())
    assert not by_kind(docs, "Job")
    assert not hooks(docs)
    assert not [d for d in docs if d["metadata"]["name"].endswith("-uninstall-cleanup")]
