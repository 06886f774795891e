"""``kubelet.authMode: csr`` in the chart (issue 15, item 10): the agents ask for per-node kubelet
client certificates, the operator alone holds the kubelet client CA's key and signs them, the
operator (not the agents' group) may grant each node's user nodes/checkpoint on its node, within
the operator-grants policy, and the agent-csr policy lets agents use that signer too."""

from __future__ import annotations

import base64

import pytest

from forensic_checkpoint.domain.identity import signing

from .chart import by_kind, documents, one, template

pytestmark = pytest.mark.slow

CSR = ["kubelet.authMode=csr"]


def test_csr_mode_renders_the_ca_the_signer_and_the_agents_flags() -> None:
    docs = documents(template(set_values=CSR))
    secret = one(docs, "Secret", "fc-forensic-checkpoint-kubelet-client-ca")
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    signing.load_ca(data["ca.crt"], data["ca.key"])  # a CA the operator's signer can use
    operator = one(docs, "Deployment")["spec"]["template"]["spec"]
    args = operator["containers"][0]["args"]
    assert "--kubelet-client-ca-key-file=/etc/forensic-checkpoint/kubelet-client-ca/ca.key" in args
    assert any(v["name"] == "kubelet-client-ca" for v in operator["volumes"])
    agent = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    agent_args = " ".join(agent["containers"][0]["args"])
    assert "--kubelet-client-certificate=csr" in agent_args
    assert "--kubelet-client-cert=" not in agent_args
    # The agent never mounts the CA, nor a shared kubelet client certificate.
    assert not {"kubelet-client", "kubelet-client-ca"} & {v["name"] for v in agent["volumes"]}
    # No group-wide grant: a certificate of one node checkpoints nothing on another.
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in by_kind(docs, kind):
            assert all(s["kind"] != "Group" for s in binding.get("subjects") or []), binding
    operator_rules = one(docs, "ClusterRole", "fc-forensic-checkpoint-operator")["rules"]
    assert {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles", "clusterrolebindings"],
        "verbs": ["get", "create", "patch"],
    } in operator_rules
    grants = one(docs, "ValidatingAdmissionPolicy", "fc-forensic-checkpoint-operator-grants")
    assert grants["spec"]["matchConditions"][0]["expression"] == (
        'request.userInfo.username == "system:serviceaccount:forensic-checkpoint:'
        'fc-forensic-checkpoint-operator"'
    )
    signers = [
        r
        for r in one(docs, "ClusterRole", "fc-forensic-checkpoint-operator")["rules"]
        if r["resources"] == ["signers"]
    ]
    assert signers[0]["resourceNames"] == [
        "forensic-checkpoint.dev/agent-serving",
        "forensic-checkpoint.dev/kubelet-client",
    ]
    policy = one(docs, "ValidatingAdmissionPolicy", "fc-forensic-checkpoint-agent-csr")
    assert (
        "forensic-checkpoint.dev/kubelet-client" in policy["spec"]["validations"][0]["expression"]
    )


def test_the_default_mode_has_no_kubelet_client_ca() -> None:
    docs = documents(template())
    names = [d["metadata"]["name"] for d in by_kind(docs, "Secret")]
    assert "fc-forensic-checkpoint-kubelet-client-ca" not in names
    policies = [d["metadata"]["name"] for d in by_kind(docs, "ValidatingAdmissionPolicy")]
    assert "fc-forensic-checkpoint-operator-grants" not in policies
    operator_rules = one(docs, "ClusterRole", "fc-forensic-checkpoint-operator")["rules"]
    assert all("clusterroles" not in r["resources"] for r in operator_rules)
