"""Each agent is verified as the agent of its own node (issue 15, item 1), on the stack's dev
cluster: an agent in csr mode gets a certificate for exactly its node's name from the operator's
signer and serves it, renewing it without a restart; the signer denies every other request with
the reason; and the operator refuses an endpoint pointed at another node's agent before sending
it anything, its token included.

Before this, every agent served one shared wildcard certificate: any agent could stand in for
any other, and nobody signed per-node requests (they stayed pending)."""

from __future__ import annotations

import re
import secrets
import socket
import ssl
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.operator.operator_e2e_support import NAMESPACE, create_pod, kubelet_calls

from forensic_checkpoint.agent_identity import SIGNER_NAME, agent_server_name
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.certificates import CertificateSigningRequests
from forensic_checkpoint.k8s.client import close, from_token
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access, processes
from forensic_checkpoint_dev.stack import AGENT_SA, SYSTEM_NAMESPACE, LocalStack

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CSR_NODE = "node-3"
#: Renewal every ~6 s: 10 % of 600 s plus the signer's 60 s backdate.
RENEW = ("--certificate-lifetime", "600", "--certificate-renew-fraction", "0.1")


def peer_certificate(endpoint: str, server_name: str, ca: str) -> x509.Certificate:
    """The certificate the agent at ``endpoint`` presents, verified against the agents' CA at
    ``server_name`` (what the operator checks)."""
    url = urlsplit(endpoint)
    context = ssl.create_default_context(cafile=ca)
    with (
        socket.create_connection((url.hostname, url.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def dns_names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in san]


@pytest.fixture(scope="module")
def csr_agent(stack: LocalStack) -> Iterator[str]:
    """node-3's agent in csr mode with a short renewal period; the files-mode agent is back
    afterwards."""
    stack.stop_agent(CSR_NODE)
    try:
        stack.start_agent(CSR_NODE, serving_certificate="csr", extra_args=RENEW)
        yield CSR_NODE
    finally:
        stack.stop_agent(CSR_NODE)
        stack.start_agent(CSR_NODE)


def test_a_csr_agent_serves_a_certificate_for_exactly_its_node(
    stack: LocalStack, csr_agent: str
) -> None:
    endpoint = stack.agent_endpoint(csr_agent)
    name = agent_server_name(csr_agent)
    cert = peer_certificate(endpoint, name, str(stack.agent_ca.cert))
    assert dns_names(cert) == [name]  # no IP, no other node, no wildcard
    assert cert.subject.rfc4514_string() == f"CN={name}"
    assert cert.issuer.rfc4514_string() == "CN=forensic-checkpoint-agents"
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        peer_certificate(endpoint, agent_server_name("node-1"), str(stack.agent_ca.cert))
    api = stack.cluster.admin_client()
    try:
        fnode = apiserver.request(
            api, "GET", f"/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes/{csr_agent}"
        )
        # The agent's own requests are gone once used (a denied one would stay).
        listing = apiserver.request(
            api,
            "GET",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            query={"labelSelector": "app.kubernetes.io/component=agent"},
        )
    finally:
        close(api)
    agent = fnode["status"]["agent"]
    assert agent.get("certificatePending", "") == ""
    assert agent["certificateNotAfter"]
    # Each request is deleted once used: at most the renewal in flight is left.
    prefix = f"forensic-checkpoint-agent-{csr_agent}-"
    assert len([c for c in listing["items"] if c["metadata"]["name"].startswith(prefix)]) <= 1
    # The operator verifies it as node-3's agent and captures through it.
    create_pod(stack, "on-csr-agent", csr_agent, containers=("app",))
    stack.create_checkpoint(NAMESPACE, "on-csr-agent", {"podName": "on-csr-agent"})
    obj = stack.wait_phase(NAMESPACE, "on-csr-agent")
    assert obj["status"]["phase"] == "Completed", obj["status"]


def test_the_certificate_is_renewed_and_served_without_a_restart(
    stack: LocalStack, csr_agent: str
) -> None:
    endpoint = stack.agent_endpoint(csr_agent)
    name = agent_server_name(csr_agent)
    pid = stack.agents[csr_agent].pid
    first = peer_certificate(endpoint, name, str(stack.agent_ca.cert))
    renewed: list[x509.Certificate] = []

    def new_serial() -> bool:
        cert = peer_certificate(endpoint, name, str(stack.agent_ca.cert))
        renewed[:] = [cert]
        return cert.serial_number != first.serial_number

    assert processes.wait_until(new_serial, 40, interval=0.5), "no renewed certificate served"
    assert stack.agents[csr_agent].pid == pid and stack.agents[csr_agent].poll() is None
    assert stack.agent_endpoint(csr_agent) == endpoint  # the same process, the same port
    (cert,) = renewed
    assert dns_names(cert) == [name]
    assert cert.not_valid_after_utc > first.not_valid_after_utc
    assert cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != first.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )  # a new key each time
    log = (stack.root / "logs" / f"agent-{csr_agent}.log").read_text()
    assert "serving certificate reloaded" in log


# --- the signer's refusals ----------------------------------------------------------------


def _request(names: Sequence[str], cn: str | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or names[0])]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def _agent_token(stack: LocalStack, node: str | None) -> str:
    admin = stack.cluster.admin_client()
    try:
        return access.request_token(admin, SYSTEM_NAMESPACE, AGENT_SA, node=node)
    finally:
        close(admin)


def _denial(stack: LocalStack, name: str, timeout: float = 20) -> dict[str, Any]:
    admin = stack.cluster.admin_client()
    path = f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
    found: dict[str, Any] = {}

    def decided() -> bool:
        csr = apiserver.request(admin, "GET", path)
        conditions = (csr.get("status") or {}).get("conditions") or []
        found.update(conditions[0] if conditions else {})
        return bool(conditions)

    try:
        assert processes.wait_until(decided, timeout, interval=0.25), f"{name} not decided"
        assert not (apiserver.request(admin, "GET", path).get("status") or {}).get("certificate")
        apiserver.request(admin, "DELETE", path)
    finally:
        close(admin)
    return found


N1, N2 = agent_server_name("node-1"), agent_server_name("node-2")


@pytest.mark.parametrize(
    "case",
    [
        ("node-1", [N2], ("digital signature", "server auth"), "WrongNames",
         f"the token is bound to node node-1, so the only name allowed is {N1}"),
        ("node-1", [N1, "operator.forensic-checkpoint.svc"], ("digital signature", "server auth"),
         "WrongNames", "operator.forensic-checkpoint.svc"),
        ("node-1", [N1], ("digital signature", "server auth", "client auth"), "WrongUsages",
         "client auth"),
        (None, [N1], ("digital signature", "server auth"), "NoNodeClaim",
         "not bound to one node"),
        ("admin", [N1], ("digital signature", "server auth"), "NotTheAgentServiceAccount",
         "not by the agents' ServiceAccount"),
    ],
    ids=["other-node", "extra-san", "client-auth", "no-node-claim", "not-the-agent"],
)  # fmt: skip
def test_the_signer_denies_with_the_reason(
    stack: LocalStack, case: tuple[str | None, list[str], tuple[str, ...], str, str]
) -> None:
    """A request by node-1's agent token for node-2's name, with an extra name, for client
    use; one by an agent token with no node claim; one by someone else (an admin)."""
    who, names, usages, reason, says = case
    name = f"fc-test-{reason.lower()}-{secrets.token_hex(3)}"
    client = (
        stack.cluster.admin_client()
        if who == "admin"
        else from_token(
            stack.cluster.server, _agent_token(stack, who), ca_file=stack.cluster.ca_file
        )
    )
    try:
        CertificateSigningRequests(client).create(
            name,
            _request(names),
            signer=SIGNER_NAME,
            usages=usages,
            expiration_seconds=600,
            labels={},
        )
    finally:
        close(client)
    denied = _denial(stack, name)
    assert (denied["type"], denied["reason"]) == ("Denied", reason), denied
    assert says in denied["message"], denied["message"]


# --- the operator refuses another node's agent --------------------------------------------


def _requests_seen(stack: LocalStack, node: str) -> dict[str, float]:
    """node's agent: API requests by route (its own /metrics), /metrics and /healthz aside."""
    text = requests.get(
        f"{stack.agent_endpoint(node)}/metrics", verify=str(stack.agent_ca.cert), timeout=10
    ).text
    seen: dict[str, float] = {}
    for route, value in re.findall(
        r'^forensic_checkpoint_agent_http_requests_total\{route="([^"]+)",status="[^"]*"\} (\S+)$',
        text,
        flags=re.MULTILINE,
    ):
        if route not in ("metrics", "healthz"):
            seen[route] = seen.get(route, 0.0) + float(value)
    return seen


def test_an_endpoint_pointed_at_another_nodes_agent_gets_nothing(stack: LocalStack) -> None:
    """node-2's ForensicNode pointed (by an admin: the admission policy stops agents doing it)
    at node-1's agent: the capture fails at once as AgentIdentityMismatch, and node-1's agent
    received no request, so neither the operator's token nor the capture reached it."""
    victim, impostor = "node-2", "node-1"
    create_pod(stack, "redirected", victim, containers=("app",))
    # One request the counter must show, so that "unchanged" below cannot mean "not counted".
    token = stack.operator_token_for(impostor)
    probe = requests.get(
        f"{stack.agent_endpoint(impostor)}/v1/captures/no-such-key",
        headers={"Authorization": f"Bearer {token}"},
        verify=str(stack.agent_ca.cert),
        timeout=10,
    )
    assert probe.status_code == 404
    before = _requests_seen(stack, impostor)
    assert sum(before.values()) >= 1, before
    stack.stop_agent(victim)
    admin = stack.cluster.admin_client()
    try:
        apiserver.request(
            admin,
            "PATCH",
            f"/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes/{victim}/status",
            {
                "status": {
                    "agent": {
                        "endpoint": stack.agent_endpoint(impostor),
                        "heartbeatTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    }
                }
            },
        )
        stack.create_checkpoint(NAMESPACE, "redirected", {"podName": "redirected"})
        obj = stack.wait_phase(NAMESPACE, "redirected", timeout=30)
    finally:
        close(admin)
        stack.start_agent(victim)
    status = obj["status"]
    assert status["phase"] == "Failed", status
    [container] = status["containers"]
    assert container["reason"] == "AgentIdentityMismatch", container
    assert f"is not the agent of node {victim}" in container["message"]
    assert N2 in container["message"]
    assert _requests_seen(stack, impostor) == before
    assert kubelet_calls(stack, impostor, "redirected") == []
    assert kubelet_calls(stack, victim, "redirected") == []
    # Heartbeats are stale after this long: the test did not pass by waiting the agent out.
    assert datetime.now(UTC) - datetime.fromisoformat(
        status["startedAt"].replace("Z", "+00:00")
    ) < timedelta(seconds=45)


# --- what an agent may do with CSRs -------------------------------------------------------


def test_an_agent_may_withdraw_only_its_own_nodes_requests(stack: LocalStack) -> None:
    """RBAC cannot tell one CSR from another; the admission policy <fullname>-agent-csr lets an
    agent create requests for the agents' signer only, and delete only its own node's."""
    path = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
    own = from_token(
        stack.cluster.server, _agent_token(stack, "node-2"), ca_file=stack.cluster.ca_file
    )
    other = from_token(
        stack.cluster.server, _agent_token(stack, "node-1"), ca_file=stack.cluster.ca_file
    )
    name = f"fc-test-own-{secrets.token_hex(3)}"
    try:
        CertificateSigningRequests(own).create(
            name,
            _request([N2]),
            signer=SIGNER_NAME,
            usages=("digital signature", "server auth"),
            expiration_seconds=600,
            labels={},
        )
        refused: list[str] = []

        def forbidden() -> bool:
            try:
                apiserver.request(other, "DELETE", f"{path}/{name}", query={"dryRun": "All"})
            except ClusterError as exc:
                refused[:] = [exc.message]
                return exc.status_code == 403
            return False

        assert processes.wait_until(forbidden, 15, interval=0.5), "node-1's agent withdrew it"
        assert "the agent of node node-1 may delete only the requests of its own node" in refused[0]
        with pytest.raises(ClusterError, match="may use only the signer") as elsewhere:
            CertificateSigningRequests(other).create(
                f"fc-test-other-signer-{secrets.token_hex(3)}",
                _request([N1]),
                signer="kubernetes.io/kube-apiserver-client",
                usages=("digital signature", "client auth"),
                expiration_seconds=600,
                labels={},
            )
        assert elsewhere.value.status_code == 403
        CertificateSigningRequests(own).delete(name)  # its own: allowed
        admin = stack.cluster.admin_client()
        try:
            with pytest.raises(ClusterError) as gone:
                apiserver.request(admin, "GET", f"{path}/{name}")
            assert gone.value.status_code == 404
        finally:
            close(admin)
    finally:
        close(own)
        close(other)
