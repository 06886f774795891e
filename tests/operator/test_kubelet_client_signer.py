"""The agents' per-node kubelet client certificates without a cluster (issue 15, item 10): the
review for the signer ``forensic-checkpoint.dev/kubelet-client`` approves only an agent's request
for exactly its own node's kubelet user in the agents' group, for client use, and issues a
client certificate from the kubelet client CA; the serving signer's rules are unchanged by the
shared review. The signer loop's test is in ``test_agent_signer.py``, the cluster tests in
``test_kubelet_client_identity_e2e.py``."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from forensic_checkpoint.agent.identity import keys
from forensic_checkpoint.agent_identity import (
    AGENTS_GROUP,
    KUBELET_CLIENT_SIGNER,
    NODE_NAME_EXTRA,
    kubelet_client_user,
)
from forensic_checkpoint.domain.identity import agent_certificates as ac
from forensic_checkpoint.domain.identity import signing
from forensic_checkpoint.domain.identity.csr_facts import CsrSpec, parse_request
from forensic_checkpoint.domain.identity.profiles import KUBELET_CLIENT, SERVING
from forensic_checkpoint_dev.cluster import pki

AGENT = "system:serviceaccount:forensic-checkpoint:forensic-checkpoint-agent"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
USER_A = kubelet_client_user("node-a")
CLIENT_USAGES = ("digital signature", "client auth")


def request_pem(
    cn: str = USER_A,
    organizations: Sequence[str] = (AGENTS_GROUP,),
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> bytes:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    key = ec.generate_private_key(ec.SECP256R1())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def spec(
    request: bytes | None = None,
    *,
    nodes: Sequence[str] | None = ("node-a",),
    usages: Sequence[str] = CLIENT_USAGES,
    name: str = "csr-1",
) -> CsrSpec:
    return CsrSpec(
        name=name,
        signer_name=KUBELET_CLIENT_SIGNER,
        username=AGENT,
        extra={} if nodes is None else {NODE_NAME_EXTRA: tuple(nodes)},
        usages=tuple(usages),
        expiration_seconds=3600,
        request=request if request is not None else request_pem(),
    )


def review(csr: CsrSpec) -> ac.Verdict:
    return ac.review(
        csr,
        parse_request(csr.request),
        agent_user=AGENT,
        node_exists=lambda n: n in ("node-a", "node-b"),
        profile=KUBELET_CLIENT,
    )


def test_the_agents_request_for_its_own_kubelet_user_is_approved() -> None:
    assert USER_A == "forensic-checkpoint:agent:node-a"
    verdict = review(spec())
    assert verdict.approved and verdict.reason == "AgentKubeletClientCertificate"
    assert verdict.subject == KUBELET_CLIENT.subject_for("node-a")
    assert review(spec(usages=("digital signature", "key encipherment", "client auth"))).approved
    # Made by the agent's own code, the request is what the signer wants.
    own = keys.request_pem(keys.new_key(), KUBELET_CLIENT.subject_for("node-a"))
    assert review(spec(own)).approved


B_USER = kubelet_client_user("node-b")


@pytest.mark.parametrize(
    ("csr", "reason", "says"),
    [
        (spec(request_pem(B_USER)), ac.WRONG_NAMES, f"must be CN={USER_A}, O={AGENTS_GROUP}"),
        (spec(request_pem(organizations=(AGENTS_GROUP, "system:masters"))), ac.WRONG_NAMES,
         "system:masters"),
        (spec(request_pem(organizations=("system:masters",))), ac.WRONG_NAMES, "alone"),
        (spec(request_pem(organizations=())), ac.WRONG_NAMES, "alone"),
        (spec(request_pem(dns=["node-a"])), ac.WRONG_NAMES, "no subject alternative name is"),
        (spec(request_pem(ips=["10.0.0.1"])), ac.WRONG_NAMES, "IPAddress:10.0.0.1"),
        (spec(usages=("digital signature", "server auth")), ac.WRONG_USAGES, "'client auth'"),
        (spec(usages=("client auth", "server auth")), ac.WRONG_USAGES, "server auth"),
        (spec(nodes=None), ac.NO_NODE, "not bound to one node"),
        (spec(nodes=("node-a", "node-b")), ac.NO_NODE, "not bound to one node"),
        (spec(request_pem(kubelet_client_user("node-gone")), nodes=("node-gone",)),
         ac.UNKNOWN_NODE, "does not exist"),
    ],
)  # fmt: skip
def test_everything_else_is_denied_with_the_reason(csr: CsrSpec, reason: str, says: str) -> None:
    verdict = review(csr)
    assert not verdict.approved
    assert (verdict.reason, says in verdict.message) == (reason, True), verdict.message


def test_a_serving_request_is_no_kubelet_client_request_nor_the_reverse() -> None:
    serving_request = keys.request_pem(keys.new_key(), SERVING.subject_for("node-a"))
    assert not review(spec(serving_request)).approved
    client = spec()
    verdict = ac.review(
        client,
        parse_request(client.request),
        agent_user=AGENT,
        node_exists=lambda n: True,
        profile=SERVING,
    )
    assert not verdict.approved and verdict.reason == ac.WRONG_NAMES


def test_the_certificate_is_a_client_certificate_for_the_kubelet_user_only(tmp_path: Path) -> None:
    pair = pki.create_ca(pki.CertPair(tmp_path / "ca.crt", tmp_path / "ca.key"), "kc")
    ca = signing.load_ca(pair.cert.read_bytes(), pair.key.read_bytes())
    pem = signing.issue(
        x509.load_pem_x509_csr(request_pem()),
        subject=KUBELET_CLIENT.subject_for("node-a"),
        ca=ca,
        now=NOW,
        valid_for=timedelta(hours=1),
    )
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.rfc4514_string() == f"O={AGENTS_GROUP},CN={USER_A}"
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert keys.describe(pem).subject == KUBELET_CLIENT.subject_for("node-a")
