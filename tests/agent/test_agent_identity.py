"""The agent's own serving certificate (``--serving-certificate=csr``) without a cluster: when it
renews, how it asks (one CSR for its node's name, a key that stays in a 0600 file), what it
does with a refusal, and what a restart keeps. The cluster tests, with the operator's signer,
are in ``tests/operator/test_agent_identity_e2e.py``."""

from __future__ import annotations

import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from forensic_checkpoint.agent.identity import keys
from forensic_checkpoint.agent.identity.renewing import CsrSettings, RenewedCertificate
from forensic_checkpoint.agent_identity import SIGNER_NAME, agent_server_name
from forensic_checkpoint.domain.identity import renewal, signing
from forensic_checkpoint.domain.identity.profiles import SERVING, Subject
from forensic_checkpoint.errors import ConfigError
from forensic_checkpoint.k8s.certificates import CsrOutcome
from forensic_checkpoint_dev.cluster import pki

NB = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_renewal_is_at_two_thirds_of_the_validity() -> None:
    na = NB + timedelta(hours=24)
    assert renewal.renew_at(NB, na) == NB + timedelta(hours=16)
    assert renewal.renew_at(NB, na, 0.5) == NB + timedelta(hours=12)
    assert renewal.seconds_to_renewal(NB + timedelta(hours=15), NB, na) == 3600
    assert renewal.seconds_to_renewal(NB + timedelta(hours=17), NB, na) == 0
    assert renewal.seconds_to_renewal(NB + timedelta(hours=30), NB, na) == 0  # expired: now
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="renewal fraction"):
            renewal.renew_at(NB, na, bad)
    assert renewal.usable(NB + timedelta(hours=23), NB, na)
    assert not renewal.usable(na, NB, na)
    assert not renewal.usable(NB - timedelta(hours=1), NB, na)


def _ca(root: Path) -> signing.SigningCA:
    pair = pki.create_ca(pki.CertPair(root / "ca.crt", root / "ca.key"), "agents")
    return signing.load_ca(pair.cert.read_bytes(), pair.key.read_bytes())


@dataclass
class FakeSigner:
    """The API server plus the operator's signer: issues, refuses, or never answers."""

    ca: signing.SigningCA
    refuse: str | None = None
    answer: bool = True
    #: name -> (request PEM, signer, usages, expiration)
    created: dict[str, tuple[bytes, str, tuple[str, ...], int]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    now: datetime = NB

    def create(
        self,
        name: str,
        request_pem: bytes,
        *,
        signer: str,
        usages: Sequence[str],
        expiration_seconds: int,
        labels: Mapping[str, str],
    ) -> None:
        self.created[name] = (request_pem, signer, tuple(usages), expiration_seconds)

    def outcome(self, name: str) -> CsrOutcome:
        if self.refuse is not None:
            return CsrOutcome(refusal=f"Denied: {self.refuse}")
        if not self.answer:
            return CsrOutcome()
        request = x509.load_pem_x509_csr(self.created[name][0])
        cn = str(request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        orgs = request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        org = str(orgs[0].value) if orgs else ""
        # As the operator's profiles: a client certificate (with a group) has no DNS name.
        subject = Subject(cn, organization=org, dns_names=() if org else (cn,), client=bool(org))
        pem = signing.issue(
            request,
            subject=subject,
            ca=self.ca,
            now=self.now,
            valid_for=timedelta(seconds=self.created[name][3]),
        )
        return CsrOutcome(certificate=pem)

    def delete(self, name: str) -> None:
        self.deleted.append(name)


def serving(
    tmp_path: Path, signer: FakeSigner, node: str = "node-a", **settings: float
) -> RenewedCertificate:
    return RenewedCertificate(
        node,
        tmp_path / "serving",
        signer,
        CsrSettings(expiration_seconds=3600, poll_interval=0.01, **settings),
        profile=SERVING,
        file_name="serving",
        clock=lambda: signer.now + timedelta(seconds=1),
    )


def test_the_agent_asks_for_its_node_name_and_keeps_the_key_to_itself(tmp_path: Path) -> None:
    signer = FakeSigner(_ca(tmp_path))
    identity = serving(tmp_path, signer)
    assert not identity.load()
    assert "no serving certificate" in identity.pending
    identity.renew()
    ((name, (pem, signer_name, usages, seconds)),) = signer.created.items()
    request = x509.load_pem_x509_csr(pem)
    san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.DNSName(agent_server_name("node-a"))]
    assert (signer_name, usages, seconds) == (
        SIGNER_NAME,
        ("digital signature", "server auth"),
        3600,
    )
    assert name.startswith("forensic-checkpoint-agent-node-a-")
    assert signer.deleted == [name]  # used, then deleted
    assert identity.pending == ""
    assert identity.current is not None
    assert identity.current.names == (agent_server_name("node-a"),)
    assert stat.S_IMODE(identity.pem_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(identity.directory.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" in identity.pem_file.read_bytes()
    assert b"PRIVATE KEY" not in pem


def test_a_restart_keeps_a_good_certificate_and_drops_another_nodes(tmp_path: Path) -> None:
    signer = FakeSigner(_ca(tmp_path))
    first = serving(tmp_path, signer)
    first.load()
    first.renew()
    again = serving(tmp_path, signer)
    assert again.load()
    assert again.current == first.current
    assert len(signer.created) == 1  # no new request
    other = serving(tmp_path, signer, node="node-b")
    assert not other.load()


def test_renewal_replaces_key_and_certificate(tmp_path: Path) -> None:
    signer = FakeSigner(_ca(tmp_path))
    identity = serving(tmp_path, signer)
    identity.load()
    identity.renew()
    first, first_file = identity.current, identity.pem_file.read_bytes()
    signer.now += timedelta(minutes=45)
    identity.renew()
    assert first is not None and identity.current is not None
    assert identity.current.not_before > first.not_before
    marker = b"-----BEGIN PRIVATE KEY"
    assert identity.pem_file.read_bytes().split(marker)[1] != first_file.split(marker)[1]


def test_a_refusal_is_said_kept_for_kubectl_and_asked_again(tmp_path: Path) -> None:
    signer = FakeSigner(_ca(tmp_path), refuse="NotTheAgentServiceAccount: requested by alice")
    identity = serving(tmp_path, signer, retry_seconds=0.05)
    identity.load()
    ready = threading.Event()
    identity.start(on_ready=ready.set)
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while len(signer.created) < 2 and datetime.now(UTC) < deadline:
            threading.Event().wait(0.01)
        assert len(signer.created) >= 2  # asked again after the back-off
        assert "Denied: NotTheAgentServiceAccount: requested by alice" in identity.pending
        assert not ready.is_set()
        assert signer.deleted == []  # a denied request stays visible
        signer.refuse = None
        assert ready.wait(10)
        assert identity.pending == ""
    finally:
        identity.stop()


def test_an_unanswered_request_is_deleted_and_the_message_names_the_signer(
    tmp_path: Path,
) -> None:
    signer = FakeSigner(_ca(tmp_path), answer=False)
    identity = serving(tmp_path, signer, answer_timeout=0.05)
    identity.load()
    with pytest.raises(Exception, match="had no answer") as raised:
        identity.renew()
    assert SIGNER_NAME in str(raised.value)
    assert signer.deleted == list(signer.created)
    # A restart deletes the request a killed run left behind.
    (identity.directory / "pending-request").write_text("forensic-checkpoint-agent-node-a-left")
    serving(tmp_path, signer).load()
    assert signer.deleted[-1] == "forensic-checkpoint-agent-node-a-left"


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="at least 600"):
        CsrSettings(expiration_seconds=599).validate()
    with pytest.raises(ConfigError, match="between 0 and 1"):
        CsrSettings(renew_fraction=1.0).validate()


def test_keys_file_holds_certificate_then_key(tmp_path: Path) -> None:
    key = keys.new_key()
    signer = FakeSigner(_ca(tmp_path))
    request = x509.load_pem_x509_csr(keys.request_pem(key, SERVING.subject_for("n")))
    pem = signing.issue(
        request,
        subject=SERVING.subject_for("n"),
        ca=signer.ca,
        now=NB,
        valid_for=timedelta(hours=1),
    )
    keys.save(tmp_path / "s.pem", key, pem)
    found = keys.load(tmp_path / "s.pem")
    assert found is not None and found.not_after == NB + timedelta(hours=1)
    assert keys.load(tmp_path / "missing.pem") is None
