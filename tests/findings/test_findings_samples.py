"""Findings on the real samples: nothing above "info" on benign containers, and on the attack
archive exactly the attacks its truth file lists (expected_findings), nothing unrelated."""

from __future__ import annotations

import pytest
from tests.findings.findings_samples import ATTACKS, BENIGN, analysed, truth

from forensic_checkpoint.analysis.model.findings import SEVERITY_RANK, Finding

#: truth-file finding id -> the rules that must report it (one of them is enough)
EXPECTED_RULES = {
    "reverse-shell": {"reverse-shell"},
    "dropped-executable": {"drop-and-execute"},
    "miner-pool-string": {"miner-pool-string"},
    "ld-preload": {"ld-preload"},
    "memfd-exec": {"memfd-exec"},
    "rwx-anonymous-mapping": {"rwx-mapping"},
    "cron-persistence": {"cron-persistence"},
    "ssh-authorized-keys": {"ssh-authorized-keys"},
    "serviceaccount-jwt-in-env": {"serviceaccount-token"},
    "web-server-spawned-shell": {"shell-under-server"},
    "history-evasion-env": {"history-evasion-env"},
    "bash-history-in-memory": {"shell-history"},
    "exploit-request-in-log": {"command-injection-in-log"},
}
#: rules that add a second view of an expected finding (same pid/path), not a new claim
RELATED = {"kernel-thread-masquerade": "memfd-exec"}


@pytest.mark.parametrize("name", BENIGN)
def test_benign_samples_have_nothing_above_info(name: str) -> None:
    above = [f for f in analysed(name).findings if SEVERITY_RANK[f.severity] > 0]
    assert above == []


def test_benign_multi_proc_inventory_is_info_and_redacted() -> None:
    findings = analysed("multi-proc").findings
    secret = next(f for f in findings if f.rule == "secret-env")
    assert secret.severity == "info"
    assert secret.evidence.pids == [11]
    assert secret.evidence.details["variable"] == "SECRET_TOKEN"
    assert "st_" not in secret.to_json()  # the value itself never leaves


def _by_rule(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.rule, []).append(f)
    return out


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_yields_every_expected_finding(name: str) -> None:
    by_rule = _by_rule(analysed(name).findings)
    for expected in truth(name)["expected_findings"]:
        if expected["id"] not in EXPECTED_RULES:
            continue
        rules = EXPECTED_RULES[expected["id"]]
        hits = [f for r in rules for f in by_rule.get(r, [])]
        assert hits, f"{expected['id']} not found"
        ev = expected["evidence"]
        wanted_pids = set(ev.get("pids") or []) | ({ev["pid"]} if "pid" in ev else set())
        if wanted_pids:
            assert any(wanted_pids <= ({f.evidence.pid} | set(f.evidence.pids)) for f in hits), (
                expected["id"],
                [f.evidence for f in hits],
            )
        if "path" in ev and expected["id"] != "ld-preload":
            assert any(f.evidence.path == ev["path"] for f in hits), expected["id"]


def test_attack_revshell_evidence_details() -> None:
    by_rule = _by_rule(analysed("attack-revshell").findings)
    shell = by_rule["reverse-shell"][0]
    assert shell.evidence.fd == [0, 1, 2]
    assert shell.evidence.socket == "tcp 10.86.0.2:58112 -> 10.86.0.1:4444 ESTABLISHED"
    assert shell.evidence.bytes == 0  # the C2 read everything (truth notes)
    pool = by_rule["miner-pool-string"][0]
    assert pool.evidence.address == "0x7ffdf8e3ba32"
    rwx = by_rule["rwx-mapping"][0]
    assert rwx.evidence.mapping == "0x7f8f504e3000-0x7f8f504e7000 rwxp [anon]"
    memfd = by_rule["memfd-exec"][0]
    assert (
        memfd.evidence.sha256 == "4add4bb89d8ca0e3b1bd861130ddd7ae0fd9617a8055de0a38c8d2ca1ac95723"
    )
    drop = by_rule["drop-and-execute"][0]
    assert drop.evidence.sha256 == memfd.evidence.sha256  # both are /bin/sleep of the image
    token = by_rule["serviceaccount-token"][0]
    assert token.evidence.details["sub"] == "system:serviceaccount:shop:storefront"
    assert token.evidence.details["value"] == "eyJhbGciOiJS...<redacted 1008 chars>"
    assert token.evidence.sha256 == (
        "bdbd0f03f751f2207452c8598c4e3037f07384dcc979072aeaa95031f15c4653"
    )
    jwt = truth("attack-revshell")["attack"]["fake_serviceaccount_jwt"]["value"]
    assert jwt[20:80] not in analysed("attack-revshell").to_json()
    cron = by_rule["cron-persistence"][0]
    assert cron.evidence.details["content"].startswith("*/5 * * * * root /tmp/.x/kworkerd")


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_has_nothing_unrelated(name: str) -> None:
    allowed = set().union(*EXPECTED_RULES.values()) | set(RELATED)
    expected_ids = {e["id"] for e in truth(name)["expected_findings"]}
    for f in analysed(name).findings:
        if f.severity == "info":
            continue
        assert f.rule in allowed, f"unrelated finding {f.id}"
        base = RELATED.get(f.rule)
        if base is not None:
            assert base in expected_ids


def test_attack_connection_graph_has_the_reverse_shell_chain() -> None:
    graph = analysed("attack-revshell").connections
    assert graph.stdio_chains == [
        "pid 14 (bash) fd 0,1,2 = tcp socket local 10.86.0.2:58112 remote 10.86.0.1:4444, "
        "outbound (pid 14 listens on no port 58112) -> tcp 10.86.0.2:58112 -> 10.86.0.1:4444 "
        "ESTABLISHED, 0 bytes queued"
    ]
    socket = next(n for n in graph.nodes if n.kind == "socket" and "4444" in n.label)
    fds = sorted(e.fd for e in graph.edges if e.target == socket.id)
    assert fds == [0, 1, 2, 255]


@pytest.mark.parametrize("name", BENIGN)
def test_benign_samples_have_no_stdio_chains(name: str) -> None:
    assert analysed(name).connections.stdio_chains == []


def test_multi_proc_graph_counts_in_flight_bytes() -> None:
    nodes = {n.id: n for n in analysed("multi-proc").connections.nodes}
    assert nodes["pipe:54497"].queued_bytes == 21  # PIPE_INFLIGHT_785726\n
    assert sorted(n.queued_bytes for n in nodes.values() if n.kind == "socket") == [
        0,
        0,
        0,
        0,
        26,
        27,
    ]
