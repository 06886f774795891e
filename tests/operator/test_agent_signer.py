"""The operator as the signer of the agents' serving certificates, and as their verifier, without
a cluster (issue 15, item 1): which CSR it approves (only an agent's, for its own node's name,
for server use), what it issues, and that the agent client refuses a peer that is not the agent
of the node it calls before sending anything. The cluster tests are in
``test_agent_identity_e2e.py``."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from forensic_checkpoint.agent.identity import keys
from forensic_checkpoint.agent_identity import (
    AGENTS_GROUP,
    KUBELET_CLIENT_SIGNER,
    NODE_NAME_EXTRA,
    SIGNER_NAME,
    agent_audience,
    agent_server_name,
    kubelet_client_user,
)
from forensic_checkpoint.cli.kubectl_forensic.agent_tls import agent_get, agent_tls_context
from forensic_checkpoint.controller.capture.agent_client import AgentClient, tls_context
from forensic_checkpoint.controller.capture.agent_tokens import AgentTokens
from forensic_checkpoint.controller.identity.config import AgentSignerConfig
from forensic_checkpoint.controller.identity.signer import AgentSigner
from forensic_checkpoint.domain.capture.agents import AgentTarget
from forensic_checkpoint.domain.identity import agent_certificates as ac
from forensic_checkpoint.domain.identity import signing
from forensic_checkpoint.domain.identity.csr_facts import CsrSpec, parse_request
from forensic_checkpoint.domain.identity.profiles import SERVING
from forensic_checkpoint.errors import AgentError, ClusterError
from forensic_checkpoint.k8s.certificates import CsrChange, CsrState
from forensic_checkpoint.k8s.nodes import NodeFacts
from forensic_checkpoint_dev.cluster import pki

AGENT = "system:serviceaccount:forensic-checkpoint:forensic-checkpoint-agent"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_agent_server_name_is_one_dns_name_per_node() -> None:
    assert agent_server_name("node-1") == "node-1.agents.forensic-checkpoint.dev"
    assert agent_server_name("ip-10-0-1-7.ec2.internal") == (
        "ip-10-0-1-7.ec2.internal.agents.forensic-checkpoint.dev"
    )
    for bad in ("", "*", "*.x", "Node", "a..b", "-a", "a b"):
        with pytest.raises(ValueError, match="not a Kubernetes node name"):
            agent_server_name(bad)


# --- requests and the review --------------------------------------------------------------


def request_pem(
    dns: Sequence[str] = (),
    *,
    cn: str | None = None,
    ips: Sequence[str] = (),
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    organization: str | None = None,
) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn if cn is not None else dns[0])]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def spec(
    request: bytes | None = None,
    *,
    username: str = AGENT,
    nodes: Sequence[str] | None = ("node-a",),
    usages: Sequence[str] = ("digital signature", "server auth"),
) -> CsrSpec:
    extra = {} if nodes is None else {NODE_NAME_EXTRA: tuple(nodes)}
    return CsrSpec(
        name="csr-1",
        signer_name=SIGNER_NAME,
        username=username,
        extra=extra,
        usages=tuple(usages),
        expiration_seconds=3600,
        request=request
        if request is not None
        else keys.request_pem(keys.new_key(), SERVING.subject_for("node-a")),
    )


def review(csr: CsrSpec, known: Sequence[str] = ("node-a", "node-b")) -> ac.Verdict:
    return ac.review(
        csr, parse_request(csr.request), agent_user=AGENT, node_exists=lambda n: n in known
    )


def tampered(pem: bytes) -> bytes:
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # inside the signature
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)


def test_the_agents_request_for_its_own_node_is_approved() -> None:
    verdict = review(spec())
    assert verdict.approved and verdict.reason == ac.APPROVED
    assert (verdict.node, verdict.subject) == ("node-a", SERVING.subject_for("node-a"))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = agent_server_name("node-a")
    assert review(spec(request_pem([name], key=rsa_key))).approved
    with_encipherment = ("digital signature", "key encipherment", "server auth")
    assert review(spec(usages=with_encipherment)).approved


A, B = agent_server_name("node-a"), agent_server_name("node-b")


@pytest.mark.parametrize(
    ("csr", "reason", "says"),
    [
        (spec(username="system:serviceaccount:kube-system:default"), ac.NOT_THE_AGENT,
         "not by the agents' ServiceAccount"),
        (spec(username="alice"), ac.NOT_THE_AGENT, "requested by alice"),
        (spec(nodes=None), ac.NO_NODE, "not bound to one node"),
        (spec(nodes=("node-a", "node-b")), ac.NO_NODE, "not bound to one node"),
        (spec(request_pem([B])), ac.WRONG_NAMES, f"only name allowed is {A}"),
        (spec(request_pem([A, B])), ac.WRONG_NAMES, f"asks for ['{A}', '{B}']"),
        (spec(request_pem([A, f"*.{A}"])), ac.WRONG_NAMES, "only name allowed"),
        (spec(request_pem([A], ips=["127.0.0.1"])), ac.WRONG_NAMES, "IPAddress:127.0.0.1"),
        (spec(request_pem([], cn=A)), ac.WRONG_NAMES, "no subject alternative name"),
        (spec(request_pem([A], cn=B)), ac.WRONG_NAMES, f"must be CN={A} alone"),
        (spec(request_pem([A], organization="system:masters")), ac.WRONG_NAMES, "alone"),
        (spec(usages=("digital signature", "server auth", "client auth")), ac.WRONG_USAGES,
         "client auth"),
        (spec(usages=("digital signature",)), ac.WRONG_USAGES, "needs 'server auth'"),
        (spec(usages=("server auth", "cert sign")), ac.WRONG_USAGES, "cert sign"),
        (spec(request_pem([A], key=ec.generate_private_key(ec.SECP521R1()))), ac.WEAK_KEY,
         "EC P-521"),
        (spec(tampered(request_pem([A]))), ac.BAD_REQUEST, "signature does not verify"),
        (spec(b"not a request"), ac.BAD_REQUEST, "not a PEM certificate request"),
        (spec(nodes=("node-gone",), request=request_pem([agent_server_name("node-gone")])),
         ac.UNKNOWN_NODE, "does not exist"),
    ],
)  # fmt: skip
def test_every_other_request_is_denied_with_the_reason(
    csr: CsrSpec, reason: str, says: str
) -> None:
    verdict = review(csr)
    assert not verdict.approved
    assert verdict.reason == reason
    assert says in verdict.message


def test_weak_rsa_is_denied() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused
    verdict = review(spec(request_pem([A], key=weak)))
    assert (verdict.approved, verdict.reason) == (False, ac.WEAK_KEY)
    assert "RSA 1024" in verdict.message


# --- what is issued -----------------------------------------------------------------------


@dataclass(frozen=True)
class CA:
    cert: Path
    key: Path
    signing: signing.SigningCA


@pytest.fixture(scope="module")
def agents_ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    root = tmp_path_factory.mktemp("agents-ca")
    pair = pki.create_ca(pki.CertPair(root / "ca.crt", root / "ca.key"), "agents-ca")
    return CA(pair.cert, pair.key, signing.load_ca(pair.cert.read_bytes(), pair.key.read_bytes()))


def test_the_certificate_is_for_the_node_name_only_and_for_serving_only(agents_ca: CA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(request_pem([A], key=key))
    pems = [
        signing.issue(
            csr,
            subject=SERVING.subject_for("node-a"),
            ca=agents_ca.signing,
            now=NOW,
            valid_for=timedelta(hours=24),
        )
        for _ in range(2)
    ]
    cert = x509.load_pem_x509_certificate(pems[0])
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == (
        x509.SubjectAlternativeName([x509.DNSName(A)])
    )
    assert cert.subject.rfc4514_string() == f"CN={A}"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert cert.not_valid_after_utc - NOW == timedelta(hours=24)
    assert NOW - cert.not_valid_before_utc == signing.BACKDATE
    assert keys.matches(key, pems[0])
    assert cert.serial_number != x509.load_pem_x509_certificate(pems[1]).serial_number
    assert signing.lifetime(86400, 3600) == timedelta(seconds=3600)
    assert signing.lifetime(900, 3600) == timedelta(seconds=900)
    assert signing.lifetime(None, 3600) == timedelta(seconds=3600)
    # Never past the CA's own end.
    late = signing.issue(
        csr,
        subject=SERVING.subject_for("node-a"),
        ca=agents_ca.signing,
        now=NOW,
        valid_for=timedelta(days=3650),
    )
    ca_end = agents_ca.signing.certificate.not_valid_after_utc
    assert x509.load_pem_x509_certificate(late).not_valid_after_utc == ca_end


def test_load_ca_refuses_a_key_of_another_certificate(agents_ca: CA) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="does not belong"):
        signing.load_ca(agents_ca.cert.read_bytes(), other)


# --- the signer loop ----------------------------------------------------------------------


class QuietWatch:
    """A watch that sees no change until it is closed."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def changes(self) -> Iterator[CsrChange]:
        self._closed.wait()
        yield from ()

    def close(self) -> None:
        self._closed.set()


@dataclass
class FakeRequests:
    states: list[CsrState]
    actions: list[tuple[str, str, str]] = field(default_factory=list)
    issued: dict[str, bytes] = field(default_factory=dict)
    #: How many approvals fail (a ClusterError) before one succeeds.
    failing_approvals: int = 0
    listings: int = 0

    def for_signer(self, signer: str) -> list[CsrState]:
        self.listings += 1
        return [s for s in self.states if s.spec.signer_name == signer]

    def watch(self, signer: str) -> QuietWatch:
        return QuietWatch()

    def approve(self, name: str, *, reason: str, message: str) -> None:
        if self.failing_approvals:
            self.failing_approvals -= 1
            raise ClusterError(f"PUT {name}/approval: 409 changed meanwhile", status_code=409)
        self.actions.append(("approve", name, reason))

    def deny(self, name: str, *, reason: str, message: str) -> None:
        self.actions.append(("deny", name, message))

    def issue(self, name: str, certificate_pem: bytes) -> None:
        self.actions.append(("issue", name, ""))
        self.issued[name] = certificate_pem

    def fail(self, name: str, *, reason: str, message: str) -> None:
        self.actions.append(("fail", name, reason))


class FakeNodes:
    def get(self, name: str) -> NodeFacts | None:
        return NodeFacts(name=name) if name in ("node-a", "node-b") else None


@dataclass
class FakeGrants:
    """Records each grant in the requests' action log, so that its order shows."""

    actions: list[tuple[str, str, str]] = field(default_factory=list)

    def ensure(self, node: NodeFacts) -> None:
        self.actions.append(("grant", node.name, ""))


def test_the_signer_approves_and_signs_denies_and_never_signs_what_it_would_deny(
    agents_ca: CA,
) -> None:
    good = spec()
    wrong = replace(spec(request_pem([B])), name="csr-2")
    approved_elsewhere = replace(spec(username="alice"), name="csr-3")
    done = replace(spec(), name="csr-4")
    fake = FakeRequests(
        [
            CsrState(good),
            CsrState(wrong),
            CsrState(approved_elsewhere, decision="Approved"),
            CsrState(done, decision="Approved", issued=True),
            CsrState(replace(spec(), name="csr-5"), decision="Denied"),
        ]
    )
    config = AgentSignerConfig(agents_ca.cert, agents_ca.key, AGENT)
    signer = AgentSigner(config, fake, FakeNodes(), FakeGrants(fake.actions), clock=lambda: NOW)
    assert signer.run_once() == 3
    assert fake.actions[:2] == [("approve", "csr-1", ac.APPROVED), ("issue", "csr-1", "")]
    assert fake.actions[2][:2] == ("deny", "csr-2")
    assert "only name allowed is" in fake.actions[2][2]
    assert fake.actions[3] == ("fail", "csr-3", ac.NOT_THE_AGENT)
    cert = x509.load_pem_x509_certificate(fake.issued["csr-1"])
    assert cert.not_valid_after_utc - NOW == timedelta(seconds=3600)  # as asked


def test_the_signer_signs_kubelet_client_requests_with_the_kubelet_client_ca(
    tmp_path: Path,
) -> None:
    kc = pki.create_ca(pki.CertPair(tmp_path / "kc.crt", tmp_path / "kc.key"), "kubelet-client")
    user = kubelet_client_user("node-a")

    def client_spec(cn: str, name: str) -> CsrSpec:
        pem = request_pem([], cn=cn, organization=AGENTS_GROUP)
        csr = spec(pem, usages=("digital signature", "client auth"))
        return replace(csr, name=name, signer_name=KUBELET_CLIENT_SIGNER)

    good, other = client_spec(user, "csr-1"), client_spec(kubelet_client_user("node-b"), "csr-2")
    fake = FakeRequests([CsrState(good), CsrState(other)])
    config = AgentSignerConfig(
        None, None, AGENT, kubelet_client_ca_file=kc.cert, kubelet_client_ca_key_file=kc.key
    )
    signer = AgentSigner(config, fake, FakeNodes(), FakeGrants(fake.actions), clock=lambda: NOW)
    assert signer.run_once() == 2
    # node-a's user may checkpoint node-a before its certificate exists; node-b gets nothing.
    assert fake.actions[:3] == [
        ("grant", "node-a", ""),
        ("approve", "csr-1", "AgentKubeletClientCertificate"),
        ("issue", "csr-1", ""),
    ]
    assert fake.actions[3:4] == [("deny", "csr-2", fake.actions[3][2])]
    cert = x509.load_pem_x509_certificate(fake.issued["csr-1"])
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(kc.cert.read_bytes()))
    assert cert.subject.rfc4514_string() == f"O={AGENTS_GROUP},CN={user}"
    # Without the kubelet client CA its requests are left alone, and the reverse.
    untouched = FakeRequests([CsrState(good)])
    assert (
        AgentSigner(
            AgentSignerConfig(kc.cert, kc.key, AGENT), untouched, FakeNodes(), FakeGrants()
        ).run_once()
        == 0
    )
    serving_only = FakeRequests([CsrState(spec())])
    assert AgentSigner(config, serving_only, FakeNodes(), FakeGrants()).run_once() == 0


def test_a_failed_action_is_tried_again_after_the_interval_and_nothing_polls(
    agents_ca: CA,
) -> None:
    """The retry a poll gave for free: an approval that failed is tried again ``interval``
    seconds later. With nothing left to do and no change seen, no further pass lists."""
    fake = FakeRequests([CsrState(spec())], failing_approvals=1)
    config = AgentSignerConfig(agents_ca.cert, agents_ca.key, AGENT, interval=0.2)
    signer = AgentSigner(config, fake, FakeNodes(), FakeGrants(fake.actions), clock=lambda: NOW)

    async def scenario() -> float:
        task = asyncio.create_task(signer.run())
        started = time.monotonic()
        try:
            while ("issue", "csr-1", "") not in fake.actions:
                assert time.monotonic() - started < 10, fake.actions
                await asyncio.sleep(0.02)
            took = time.monotonic() - started
            await asyncio.sleep(1.0)  # five intervals
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return took

    took = asyncio.run(scenario())
    assert 0.2 <= took < 5
    assert fake.actions == [("approve", "csr-1", ac.APPROVED), ("issue", "csr-1", "")]
    assert fake.listings == 2  # the failed pass and its retry; a poll would have gone on


# --- the operator's client refuses another node's agent ----------------------------------


class _CountingHandler(BaseHTTPRequestHandler):
    seen: list[str]
    # Keep-alive, as the agent: the first call's connection stays in the client's pool.
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def node_a_agent(agents_ca: CA, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An HTTPS server with node-a's agent certificate (and an IP SAN, as the dev stack's), that
    records the Authorization header of every request it gets."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(request_pem([A], key=key))
    cert = signing.issue(
        csr,
        subject=SERVING.subject_for("node-a"),
        ca=agents_ca.signing,
        now=datetime.now(UTC),
        valid_for=timedelta(1),
    )
    keys.save(tmp_path / "serving.pem", key, cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "serving.pem", tmp_path / "serving.pem")
    seen: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_operator_sends_nothing_to_another_nodes_agent(
    agents_ca: CA, node_a_agent: tuple[str, list[str]], tmp_path: Path
) -> None:
    endpoint, seen = node_a_agent
    tokens = AgentTokens(lambda audience: f"token-for-{audience}", 3600)

    async def calls() -> tuple[Any, AgentError]:
        async with aiohttp.ClientSession() as session:
            client = AgentClient(session, tokens, tls_context(agents_ca.cert))
            # Pools a connection verified as node-a's agent, which must not serve node-b.
            ok = await client.status(AgentTarget("node-a", endpoint), "k")
            with pytest.raises(AgentError) as refused:
                await client.status(AgentTarget("node-b", endpoint), "k")
            return ok, refused.value

    ok, refused = asyncio.run(calls())
    assert ok is None  # node-a's agent answered (404: no such job)
    assert refused.reason == "AgentIdentityMismatch"
    assert "is not the agent of node node-b" in refused.message
    assert agent_server_name("node-b") in refused.message
    # node-a's own call only, with node-a's token
    assert seen == [f"Bearer token-for-{agent_audience('node-a')}"]


def test_the_plugins_tls_checks_the_node_name_too(
    agents_ca: CA, node_a_agent: tuple[str, list[str]]
) -> None:
    endpoint, seen = node_a_agent
    port = int(endpoint.rsplit(":", 1)[1])
    context = agent_tls_context(ca_file=agents_ca.cert)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        response = agent_get(sock, "node-a", context, "/x", "t-a")
        with response:
            assert response.status == 404
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|doesn't match"),
    ):
        agent_get(sock, "node-b", context, "/x", "t-b")
    assert seen == ["Bearer t-a"]
