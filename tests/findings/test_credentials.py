"""Credential exposure inventory: environment, files and memory, always redacted."""

from __future__ import annotations

import base64
import hashlib
import json

from tests.findings.findings_crafted import proc, report, rootfs
from tests.findings.findings_samples import DATA, analysed, truth

from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.analysis.findings.credentials import MemoryCredentials
from forensic_checkpoint.analysis.findings.engine import default_rules
from forensic_checkpoint.analysis.findings.run import find_all

PEM = (
    b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
    b"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    b"QyNTUxOQAAACDmZmFrZWtleWZha2VrZXlmYWtla2V5ZmFrZWtleWZhAAAAkA==\n"
    b"-----END OPENSSH PRIVATE KEY-----\n"
)
AWS = "AKIA" + "Q3EGRZ7XAMPLE5KEY"[:16]


def _b64(doc: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def test_serviceaccount_token_counted_per_process_memory_as_in_the_truth() -> None:
    token = next(
        f for f in analysed("attack-revshell").findings if f.rule == "serviceaccount-token"
    )
    expected = next(
        e
        for e in truth("attack-revshell")["expected_findings"]
        if e["id"] == "serviceaccount-jwt-in-env"
    )["evidence"]["raw_occurrences_in_pages_per_pid"]
    in_memory = dict(part.split(": ") for part in token.evidence.details["in_memory"].split(", "))
    assert in_memory == {f"pid {pid}": str(n) for pid, n in expected.items() if n}
    assert token.evidence.details["variable"] == "TOKEN"


def test_memory_search_can_be_skipped() -> None:
    report = analyze(DATA / "attack-revshell.tar.zst", AnalyzerOptions(memory_secrets=False))
    token = next(f for f in report.findings if f.rule == "serviceaccount-token")
    assert "in_memory" not in token.evidence.details
    assert token.evidence.pids == [13, 14, 22, 23, 24]  # still found in the environments


def test_private_key_and_cloud_key_in_files_are_high_and_hashed_whole() -> None:
    files = {"/root/.ssh/id_ed25519": b"junk\n" + PEM, "/app/.env": f"KEY={AWS}\n".encode()}
    rep = report(
        rootfs=rootfs(("/root/.ssh/id_ed25519", "file", "0o600"), ("/app/.env", "file", "0o644"))
    )
    found = {f.rule: f for f in find_all(rep, {}, files, {})}
    key = found["private-key"]
    assert key.severity == "high"
    assert key.evidence.path == "/root/.ssh/id_ed25519"
    assert key.evidence.sha256 == hashlib.sha256(PEM.rstrip(b"\n")).hexdigest()
    assert found["aws-access-key"].evidence.path == "/app/.env"
    dump = json.dumps([f.to_json_dict() for f in found.values()])
    assert AWS not in dump and "b3BlbnNzaC1rZXkt" not in dump


def test_jwt_kinds_and_secret_env_names() -> None:
    header = _b64({"alg": "HS256", "typ": "JWT"})
    plain = f"{header}.{_b64({'sub': 'user-42', 'iat': 1})}.c2lnbmF0dXJlLWJ5dGVz"
    sa = f"{header}.{_b64({'sub': 'system:serviceaccount:ns:sa'})}.c2lnbmF0dXJlLWJ5dGVz"
    procs = [
        proc(5, "app", env={"SESSION": plain, "DB_PASSWORD": "hunter2", "HOME": "/root"}),
        proc(6, "app", env={"X": sa}),
    ]
    found = {f.rule: f for f in find_all(report(processes=procs), {}, {}, {})}
    assert found["jwt"].severity == "low"
    assert found["jwt"].evidence.details["sub"] == "user-42"
    assert found["serviceaccount-token"].evidence.pids == [6]
    secret = found["secret-env"]
    assert secret.severity == "info"
    assert secret.evidence.details["variable"] == "DB_PASSWORD"
    assert secret.evidence.details["value"] == "...<redacted 7 chars>"
    assert "hunter2" not in json.dumps([f.to_json_dict() for f in found.values()])


def test_memory_candidates_are_checked_by_the_detectors() -> None:
    scanner = MemoryCredentials(default_rules().credentials)
    data = bytearray(64 * 1024)
    data[100 : 100 + len(PEM)] = PEM
    data[9000:9020] = AWS.encode()
    data[12000:12040] = b"-----BEGIN RSA PRIVATE KEY----- truncated"  # no END: not a key
    scanner.scan(bytes(data), base=0x7F0000000000, pid=9, where="pid 9")
    got = sorted((h.detector["id"], h.address) for h in scanner.hits)
    assert got == [("aws-access-key", 0x7F0000000000 + 9000), ("private-key", 0x7F0000000000 + 100)]


def test_secrets_are_masked_in_text_the_findings_copy() -> None:
    from forensic_checkpoint.analysis.findings.credentials import mask_secrets

    detectors = list(default_rules().credentials["detectors"])
    header = _b64({"alg": "HS256"})
    token = f"{header}.{_b64({'sub': 'x', 'iat': 1})}.c2lnbmF0dXJlLWJ5dGVz"
    text = f"curl -H 'Authorization: Bearer {token}' --aws {AWS} https://api"
    masked = mask_secrets(text, detectors)
    assert token not in masked and AWS not in masked
    assert masked == (
        f"curl -H 'Authorization: Bearer <redacted {len(token)} chars>' --aws "
        "<redacted 20 chars> https://api"
    )
    assert mask_secrets("ls -la /tmp", detectors) == "ls -la /tmp"
    # a finding's details (argv) go through the same mask
    p = proc(7, "xmrig", argv=["xmrig", "-o", "stratum+tcp://pool:3333", "--key", AWS])
    found = {f.rule: f for f in find_all(report(processes=[p]), {}, {}, {})}
    assert AWS not in found["miner-pool-string"].evidence.details["argv"]
