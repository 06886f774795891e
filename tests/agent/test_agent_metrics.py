"""The agent's node readiness and certificate expiry metrics, as Prometheus scrapes them."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from forensic_checkpoint.agent.identity import keys
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint_dev.cluster import pki


def _samples(metrics: AgentMetrics, name: str) -> list[tuple[dict[str, str], float]]:
    families = text_string_to_metric_families(metrics.render().decode())
    return [(s.labels, s.value) for f in families for s in f.samples if s.name == name]


def test_every_agent_metric_has_the_project_prefix() -> None:
    metrics = AgentMetrics()
    metrics.watch_storage(lambda: ({"Completed": 1}, 10))
    metrics.watch_readiness(lambda: ("n1", "True", "Ready"))
    metrics.watch_certificates(lambda: {})
    names = {f.name for f in text_string_to_metric_families(metrics.render().decode())}
    assert names and all(n.startswith("forensic_checkpoint_agent_") for n in names), names


def test_node_ready_is_one_when_ready_and_zero_with_the_reason_otherwise() -> None:
    metrics = AgentMetrics()
    last: list[tuple[str, str, str] | None] = [None]
    metrics.watch_readiness(lambda: last[0])
    assert _samples(metrics, "forensic_checkpoint_agent_node_ready") == []
    last[0] = ("node-a", "True", "Ready")
    assert _samples(metrics, "forensic_checkpoint_agent_node_ready") == [
        ({"node": "node-a", "status": "True", "reason": "Ready"}, 1.0)
    ]
    last[0] = ("node-a", "False", "CheckpointGateDisabled")
    # One series per node: the old reason does not linger after the state changed.
    assert _samples(metrics, "forensic_checkpoint_agent_node_ready") == [
        ({"node": "node-a", "status": "False", "reason": "CheckpointGateDisabled"}, 0.0)
    ]
    last[0] = ("node-a", "Unknown", "KubeletUnreachable")
    assert _samples(metrics, "forensic_checkpoint_agent_node_ready")[0][1] == 0.0


def test_certificate_expiry_is_the_not_after_of_each_file(tmp_path: Path) -> None:
    ca = pki.create_ca(pki.CertPair(tmp_path / "ca.crt", tmp_path / "ca.key"), "test-ca")
    client = pki.issue(
        ca, pki.CertPair(tmp_path / "c.crt", tmp_path / "c.key"), "agent", client=True
    )
    serving = pki.issue(
        ca, pki.CertPair(tmp_path / "s.crt", tmp_path / "s.key"), "s", server_names=("s",)
    )
    files: dict[str, Path | None] = {"kubelet-client": client.cert, "serving": serving.cert}
    metrics = AgentMetrics()
    metrics.watch_certificates(lambda: {k: keys.not_after(v) for k, v in files.items()})
    name = "forensic_checkpoint_agent_certificate_expiry_timestamp_seconds"
    got = {labels["certificate"]: value for labels, value in _samples(metrics, name)}
    for key, pair in (("kubelet-client", client), ("serving", serving)):
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        assert got[key] == cert.not_valid_after_utc.timestamp()
    # Token mode (no client certificate) and a certificate not issued yet: no series.
    files.update({"kubelet-client": None, "serving": tmp_path / "missing.pem"})
    assert _samples(metrics, name) == []
