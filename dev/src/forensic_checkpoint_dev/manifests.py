"""Server-side apply of the manifests the local stack runs with: deploy/rbac/*.yaml and, from the
rendered chart (deploy/forensic-checkpoint.yaml), its admission policies and the custodian role,
so that the stack's API server enforces what an installed chart does. The stack runs an agent in
kubelet.authMode csr too, whose policy deploy/ (the default mode) lacks: it is rendered apart."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.errors import ClusterError, ToolError
from forensic_checkpoint.k8s.client import ApiClient, close
from forensic_checkpoint_dev import deploy
from forensic_checkpoint_dev.apiserver import APPLY, call, request
from forensic_checkpoint_dev.cluster import processes
from forensic_checkpoint_dev.repo import REPO_ROOT

DEPLOY_MANIFEST = REPO_ROOT / "deploy" / "forensic-checkpoint.yaml"
CHART_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
CUSTODIAN_ROLE = "forensic-checkpoint-custodian"
#: Names the receiver's identity, which differs between stacks (the alert tests run the receiver
#: as a user of their own): tests/alerts/test_alert_provenance_cluster.py applies it with the
#: identity it tests.
PER_STACK_POLICY = "forensic-checkpoint-alert-provenance"
#: The agent's user in deploy/ (its ServiceAccount in the release namespace).
AGENT_USER = "system:serviceaccount:forensic-checkpoint:forensic-checkpoint-agent"


def _appliers(api: ApiClient) -> dict[str, tuple[Any, bool]]:
    """kind -> (server-side apply method, namespaced) for the manifests in deploy/rbac and the
    chart's admission policies."""
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    admission = k8s.AdmissionregistrationV1Api(api)
    return {
        "Namespace": (core.patch_namespace, False),
        "ServiceAccount": (core.patch_namespaced_service_account, True),
        "ClusterRole": (rbac.patch_cluster_role, False),
        "ClusterRoleBinding": (rbac.patch_cluster_role_binding, False),
        "Role": (rbac.patch_namespaced_role, True),
        "RoleBinding": (rbac.patch_namespaced_role_binding, True),
        "ValidatingAdmissionPolicy": (admission.patch_validating_admission_policy, False),
        "ValidatingAdmissionPolicyBinding": (
            admission.patch_validating_admission_policy_binding,
            False,
        ),
    }


def apply_manifests(api: ApiClient, files: list[Path]) -> None:
    """Server-side apply every document of ``files`` (kinds in ``_appliers`` only)."""
    for path in files:
        apply_documents(api, yaml.safe_load_all(path.read_text(encoding="utf-8")))


def apply_documents(api: ApiClient, docs: Iterable[dict[str, Any] | None]) -> None:
    appliers = _appliers(api)
    for doc in docs:
        if not doc:
            continue
        apply, namespaced = appliers[doc["kind"]]
        name = doc["metadata"]["name"]
        scope = [doc["metadata"]["namespace"]] if namespaced else []
        call(
            f"apply {doc['kind']} {name}",
            apply,
            name,
            *scope,
            doc,
            field_manager="forensic-checkpoint-stack",
            force=True,
            _content_type=APPLY,
        )


#: The chart's policy for kubelet.authMode csr only (what the operator may grant).
KUBELET_CSR_POLICY = "templates/admission-operator-grants.yaml"


@functools.cache
def _kubelet_csr_policy() -> str:
    """Rendered once per process: every stack a test session prepares applies it."""
    return deploy.helm_template(
        deploy.DEPLOY_VALUES,
        release="forensic-checkpoint",
        set_values=["kubelet.authMode=csr"],
        show_only=KUBELET_CSR_POLICY,
    )


def chart_admission(manifest: Path = DEPLOY_MANIFEST) -> list[dict[str, Any]]:
    """The rendered chart's admission policies and bindings (but the per-stack alert-provenance
    one), the kubelet csr mode's, and the custodian role."""
    return [doc for doc in yaml.safe_load_all(_kubelet_csr_policy()) if doc] + [
        doc
        for doc in yaml.safe_load_all(manifest.read_text(encoding="utf-8"))
        if doc
        and (
            (doc["kind"] in CHART_KINDS and doc["metadata"]["name"] != PER_STACK_POLICY)
            or (doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == CUSTODIAN_ROLE)
        )
    ]


def apply_chart_admission(api: ApiClient) -> None:
    """Apply ``chart_admission()`` and close ``api`` (a dev cluster with its CRDs gets them)."""
    try:
        apply_documents(api, chart_admission())
        wait_admission_enforced(api)
    finally:
        close(api)


def wait_admission_enforced(api: ApiClient, timeout: float = 30.0) -> None:
    """Wait until the API server enforces the policies just applied: its policy informer
    syncs within seconds, and until then a write they refuse is admitted. The probe is a dry
    run, as the agent without a node claim, of a ForensicNode the agent-node policy refuses
    (in ``system:masters``, so that RBAC, which decides first, lets it through to admission)."""
    crd = ForensicNode.crd
    path = f"/apis/{crd.group}/{crd.version}/{crd.plural}"
    probe = {
        "apiVersion": f"{crd.group}/{crd.version}",
        "kind": crd.kind,
        "metadata": {"name": "admission-probe"},
    }
    deadline = time.monotonic() + timeout
    while True:
        try:
            request(
                api,
                "POST",
                path,
                probe,
                {"dryRun": "All"},
                impersonate=AGENT_USER,
                impersonate_group="system:masters",
            )
        except ClusterError as exc:
            if "agent-node policy" not in exc.message:
                raise
            return
        if time.monotonic() > deadline:
            raise ToolError(f"the chart's admission policies were not enforced in {timeout:.0f} s")
        time.sleep(0.2)


def apply_crds(api: ApiClient, files: Iterable[Path]) -> list[str]:
    """Server-side apply every CRD in ``files`` and wait until each is Established."""
    crds = k8s.ApiextensionsV1Api(api)
    names: list[str] = []
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            call(
                f"apply CRD {name}",
                crds.patch_custom_resource_definition,
                name,
                doc,
                field_manager="forensic-checkpoint-dev-cluster",
                force=True,
                _content_type=APPLY,
            )
            names.append(name)

    def established(name: str) -> bool:
        crd = call(f"read CRD {name}", crds.read_custom_resource_definition, name)
        conds = crd.get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    for name in names:
        if not processes.wait_until(lambda n=name: established(n), 30, interval=0.1):  # type: ignore[misc]
            raise ClusterError(f"CRD {name} not Established within 30 s")
    return names
