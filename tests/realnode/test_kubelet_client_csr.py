"""``kubelet.authMode: csr`` on the real kubelet: the agent asks the operator's signer for a
short-lived client certificate for its own node, and the real kubelet, trusting forensic-
checkpoint's kubelet client CA beside the cluster CA (as docs/install.md tells an installation),
authenticates it and authorises it through the per-node grant. A certificate for another node's
agent, from the same CA, is refused by this kubelet."""

from __future__ import annotations

import requests
from cryptography import x509
from tests.realnode.support import NAMESPACE, RealNodeEnv

from forensic_checkpoint.agent_identity import AGENTS_GROUP, kubelet_client_user
from forensic_checkpoint_dev.cluster import pki, processes


def test_the_agent_captures_with_its_own_node_certificate(real_env: RealNodeEnv) -> None:
    node = real_env.node.name
    pem = real_env.stack.root / "agents" / node / "state" / "kubelet-client" / "kubelet-client.pem"
    pem.unlink(missing_ok=True)
    real_env.busybox_pod("kc-csr", "sleep 3600")
    real_env.stack.stop_agent(node)
    real_env.stack.start_agent(node, kubelet_client_certificate="csr")
    try:
        assert processes.wait_until(pem.exists, 30, interval=0.25), "no certificate issued"
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        assert cert.subject.rfc4514_string() == f"O={AGENTS_GROUP},CN={kubelet_client_user(node)}"
        ready = lambda: real_env.stack.readiness(node).get("status") == "True"  # noqa: E731
        assert processes.wait_until(ready, 60, interval=0.5), real_env.stack.readiness(node)
        calls = real_env.node.runtime_calls()
        obj = real_env.capture("kc-csr", {"podName": "kc-csr"})
        assert obj["status"]["phase"] == "Completed", obj["status"]
        assert real_env.node.runtime_calls() == calls + 1

        # Another node's agent certificate from the same CA: authenticated, not authorised.
        other = pki.issue(
            real_env.cluster.forensic_kubelet_client_ca,
            pki.CertPair(real_env.root / "other.crt", real_env.root / "other.key"),
            kubelet_client_user("node-elsewhere"),
            organizations=(AGENTS_GROUP,),
            client=True,
        )
        response = requests.post(
            f"https://{real_env.node.ip}:{real_env.node.port}/checkpoint/{NAMESPACE}/kc-csr/app",
            cert=(str(other.cert), str(other.key)),
            verify=str(real_env.node.serving_ca),
            timeout=30,
        )
        assert response.status_code == 403, (response.status_code, response.text)
        assert kubelet_client_user("node-elsewhere") in response.text
        assert real_env.node.runtime_calls() == calls + 1
    finally:
        real_env.start_agent()
        real_env.delete_pod("kc-csr")
