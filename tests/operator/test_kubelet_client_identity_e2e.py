"""Per-node, short-lived kubelet client certificates (issue 15, item 10), on the stack's dev
cluster: an agent with ``--kubelet-client-certificate=csr`` gets a certificate for its own
node's kubelet user from the operator's signer ``forensic-checkpoint.dev/kubelet-client`` and
captures through its kubelet with it (the fake kubelets trust that CA in their client CA
bundle, as docs/install.md tells an installation to set up); it renews the certificate with a
new key without a restart; the API server does not accept it; and the signer denies every
request that is not exactly the requesting node's.

Before this, every agent used one shared kubelet client certificate, valid a year, that no
single node could lose."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.operator.operator_e2e_support import NAMESPACE, create_pod, fake_node, kubelet_calls

from forensic_checkpoint.agent_identity import (
    AGENTS_GROUP,
    KUBELET_CLIENT_SIGNER,
    kubelet_client_grant_name,
    kubelet_client_user,
)
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.certificates import CertificateSigningRequests
from forensic_checkpoint.k8s.client import close, from_token
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access, processes
from forensic_checkpoint_dev.stack import AGENT_SA, OPERATOR_SA, SYSTEM_NAMESPACE, LocalStack

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NODE = "node-3"
#: Renewal every ~6 s: 10 % of 600 s plus the signer's 60 s backdate.
RENEW = ("--kubelet-certificate-lifetime", "600", "--certificate-renew-fraction", "0.1")


def pem_file(stack: LocalStack) -> Path:
    return stack.root / "agents" / NODE / "state" / "kubelet-client" / "kubelet-client.pem"


def current(stack: LocalStack) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem_file(stack).read_bytes())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def kc_agent(stack: LocalStack) -> Iterator[str]:
    """node-3's agent with its own kubelet client certificate; the token agent is back after."""
    stack.stop_agent(NODE)
    try:
        stack.start_agent(NODE, kubelet_client_certificate="csr", extra_args=RENEW)
        assert processes.wait_until(lambda: current(stack) is not None, 30, interval=0.25)
        # The round after the certificate arrived reaches the kubelet.
        ready = lambda: stack.readiness(NODE).get("status") == "True"  # noqa: E731
        assert processes.wait_until(ready, 30, interval=0.25), stack.readiness(NODE)
        yield NODE
    finally:
        stack.stop_agent(NODE)
        stack.start_agent(NODE)


def test_the_agent_captures_with_a_certificate_for_its_own_node(
    stack: LocalStack, kc_agent: str
) -> None:
    cert = current(stack)
    assert cert is not None
    assert cert.subject.rfc4514_string() == f"O={AGENTS_GROUP},CN={kubelet_client_user(NODE)}"
    assert cert.issuer.rfc4514_string() == "CN=forensic-checkpoint-kubelet-client-ca"
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() <= 660
    create_pod(stack, "kc-capture", kc_agent, containers=("app",))
    stack.create_checkpoint(NAMESPACE, "kc-capture", {"podName": "kc-capture"})
    obj = stack.wait_phase(NAMESPACE, "kc-capture")
    assert obj["status"]["phase"] == "Completed", obj["status"]
    # The kubelet saw the node's own user (CN; the group O authorised it through RBAC).
    [call] = kubelet_calls(stack, kc_agent, "kc-capture")
    assert (call["user"], call["status"]) == (kubelet_client_user(NODE), 200)


def test_it_checkpoints_on_its_own_node_only(stack: LocalStack, kc_agent: str) -> None:
    """A certificate taken from node-3 is refused by node-2's kubelet (it trusts the same CA):
    the operator granted node-3's user ``create nodes/checkpoint`` on node-3 alone, in a role
    and binding the Node owns (so they go with it)."""
    other = fake_node(stack, "node-2")
    response = requests.post(
        f"{other.url}/checkpoint/{NAMESPACE}/any-pod/app",
        cert=str(pem_file(stack)),
        verify=str(other.serving_ca),
        timeout=10,
    )
    assert response.status_code == 403, response.text
    assert kubelet_client_user(NODE) in response.text
    admin = stack.cluster.admin_client()
    try:
        name = kubelet_client_grant_name(NODE)
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        role = apiserver.request(admin, "GET", f"{rbac}/clusterroles/{name}")
        binding = apiserver.request(admin, "GET", f"{rbac}/clusterrolebindings/{name}")
        node = apiserver.request(admin, "GET", f"/api/v1/nodes/{NODE}")
    finally:
        close(admin)
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["nodes/checkpoint"],
            "resourceNames": [NODE],
            "verbs": ["create"],
        }
    ]
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": kubelet_client_user(NODE)}
    ]
    for obj in (role, binding):
        [owner] = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Node",
            NODE,
            node["metadata"]["uid"],
        )


@pytest.mark.parametrize(
    "case",
    [
        ("clusterroles", "evil", [], "may write only the roles and bindings named"),
        ("clusterroles", kubelet_client_grant_name("node-1"), ["get forensicnodes"],
         "may hold only the rule create nodes/checkpoint on node node-1"),
        ("clusterroles", kubelet_client_grant_name("node-1"), ["checkpoint node-2"],
         "may hold only the rule create nodes/checkpoint on node node-1"),
        ("clusterrolebindings", kubelet_client_grant_name(NODE), ["group"],
         f"may bind only its own role to the user forensic-checkpoint:agent:{NODE}"),
        ("clusterrolebindings", kubelet_client_grant_name("node-1"), ["node-3's role"],
         "may bind only its own role to the user forensic-checkpoint:agent:node-1"),
    ],
    ids=["other-name", "other-rule", "other-node", "group-subject", "other-role"],
)  # fmt: skip
def test_the_operator_may_grant_nothing_else(
    stack: LocalStack, kc_agent: str, case: tuple[str, str, list[str], str]
) -> None:
    """The operator's RBAC write rights (which it needs for the grants above) are narrowed by
    the chart's operator-grants policy to exactly that shape. Each case is one that RBAC's own
    escalation check lets through (the operator holds every right asked for; node-3's role
    exists, granted to ``kc_agent``), so only the policy refuses it."""
    plural, name, twists, says = case
    node = name.rsplit(":", 1)[-1]
    rule: dict[str, Any] = {
        "apiGroups": [""],
        "resources": ["nodes/checkpoint"],
        "resourceNames": [node],
        "verbs": ["create"],
    }
    if "get forensicnodes" in twists:
        # A right the operator holds, so RBAC's escalation check alone would let it pass.
        rule = {
            "apiGroups": ["forensic-checkpoint.dev"],
            "resources": ["forensicnodes"],
            "verbs": ["get"],
        }
    if "checkpoint node-2" in twists:
        rule = {**rule, "resourceNames": ["node-2"]}
    subject = {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "User",
        "name": f"forensic-checkpoint:agent:{node}",
    }
    if "group" in twists:
        subject = {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Group",
            "name": "system:authenticated",
        }
    body: dict[str, Any] = {"metadata": {"name": name}}
    if plural == "clusterroles":
        body |= {"kind": "ClusterRole", "rules": [rule]}
    else:
        role = kubelet_client_grant_name(kc_agent) if "node-3's role" in twists else name
        body |= {
            "kind": "ClusterRoleBinding",
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [subject],
        }
    body["apiVersion"] = "rbac.authorization.k8s.io/v1"
    admin = stack.cluster.admin_client()
    try:
        token = access.request_token(admin, SYSTEM_NAMESPACE, OPERATOR_SA)
    finally:
        close(admin)
    operator = from_token(stack.cluster.server, token, ca_file=stack.cluster.ca_file)
    try:
        with pytest.raises(ClusterError) as refused:
            apiserver.request(
                operator,
                "POST",
                f"/apis/rbac.authorization.k8s.io/v1/{plural}",
                body=body,
                query={"dryRun": "All"},
            )
    finally:
        close(operator)
    assert "operator-grants policy" in str(refused.value), refused.value
    assert says in str(refused.value), refused.value


def test_the_api_server_does_not_accept_it(stack: LocalStack, kc_agent: str) -> None:
    response = requests.get(
        f"{stack.cluster.server}/api/v1/nodes",
        cert=str(pem_file(stack)),
        verify=str(stack.cluster.ca_file),
        timeout=10,
    )
    assert response.status_code == 401  # anonymous: the kubelet client CA is not trusted


def test_it_is_renewed_with_a_new_key_without_a_restart(stack: LocalStack, kc_agent: str) -> None:
    first = current(stack)
    assert first is not None
    pid = stack.agents[kc_agent].pid

    def renewed() -> bool:
        now = current(stack)
        return now is not None and now.serial_number != first.serial_number

    assert processes.wait_until(renewed, 40, interval=0.5), "not renewed"
    second = current(stack)
    assert second is not None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert second.public_key().public_bytes(der, spki) != first.public_key().public_bytes(der, spki)
    assert stack.agents[kc_agent].pid == pid and stack.agents[kc_agent].poll() is None
    # The next capture uses the renewed file, in the same process.
    create_pod(stack, "kc-renewed", kc_agent, containers=("app",))
    stack.create_checkpoint(NAMESPACE, "kc-renewed", {"podName": "kc-renewed"})
    obj = stack.wait_phase(NAMESPACE, "kc-renewed")
    assert obj["status"]["phase"] == "Completed", obj["status"]


# --- the signer's refusals ----------------------------------------------------------------


def _request(cn: str, organizations: Sequence[str], dns: Sequence[str] = ()) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


U1, U2 = kubelet_client_user("node-1"), kubelet_client_user("node-2")
CLIENT = ("digital signature", "client auth")


@pytest.mark.parametrize(
    "case",
    [
        ("node-1", U2, [AGENTS_GROUP], [], CLIENT, "WrongNames", f"must be CN={U1}"),
        ("node-1", U1, [AGENTS_GROUP, "system:masters"], [], CLIENT, "WrongNames",
         "system:masters"),
        ("node-1", U1, [AGENTS_GROUP], ["node-1"], CLIENT, "WrongNames",
         "no subject alternative name is allowed"),
        ("node-1", U1, [AGENTS_GROUP], [], ("digital signature", "client auth", "server auth"),
         "WrongUsages", "server auth"),
        (None, U1, [AGENTS_GROUP], [], CLIENT, "NoNodeClaim", "not bound to one node"),
    ],
    ids=["other-node", "system-masters", "san", "server-auth", "no-node-claim"],
)  # fmt: skip
def test_the_signer_denies_with_the_reason(
    stack: LocalStack,
    case: tuple[str | None, str, list[str], list[str], tuple[str, ...], str, str],
) -> None:
    node, cn, groups, dns, usages, reason, says = case
    admin = stack.cluster.admin_client()
    try:
        token = access.request_token(admin, SYSTEM_NAMESPACE, AGENT_SA, node=node)
    finally:
        close(admin)
    name = f"fc-test-kc-{reason.lower()}-{secrets.token_hex(3)}"
    client = from_token(stack.cluster.server, token, ca_file=stack.cluster.ca_file)
    try:
        # The agent-csr admission policy lets an agent use this signer.
        CertificateSigningRequests(client).create(
            name,
            _request(cn, groups, dns),
            signer=KUBELET_CLIENT_SIGNER,
            usages=usages,
            expiration_seconds=600,
            labels={},
        )
    finally:
        close(client)
    admin = stack.cluster.admin_client()
    path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
    found: dict[str, str] = {}

    def decided() -> bool:
        conditions = (apiserver.request(admin, "GET", path).get("status") or {}).get(
            "conditions"
        ) or []
        found.update(conditions[0] if conditions else {})
        return bool(conditions)

    try:
        assert processes.wait_until(decided, 20, interval=0.25), f"{name} not decided"
        assert not (apiserver.request(admin, "GET", path).get("status") or {}).get("certificate")
        apiserver.request(admin, "DELETE", path)
    finally:
        close(admin)
    assert (found["type"], found["reason"]) == ("Denied", reason), found
    assert says in found["message"], found["message"]
