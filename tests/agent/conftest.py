"""Fixtures of the agent tests: real certificates (trustme), a real checkpoint archive, and a
node's directories with a fake kubelet (``env``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from tests.agent.agent_support import Env, Pki
from tests.factories import plain_sample

from forensic_checkpoint.agent.capture.service import CaptureService


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    other = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("agent@example", common_name="forensic-checkpoint-agent")
    operator = ca.issue_cert("operator@example", common_name="forensic-checkpoint-operator")
    rogue = other.issue_cert("operator@example", common_name="forensic-checkpoint-operator")
    for stem, cert in (("operator", operator), ("rogue", rogue)):
        cert.private_key_pem.write_to_path(str(root / f"{stem}.key"))
        cert.cert_chain_pems[0].write_to_path(str(root / f"{stem}.crt"))
    ca.cert_pem.write_to_path(str(root / "ca.crt"))
    other.cert_pem.write_to_path(str(root / "other-ca.crt"))
    server.private_key_pem.write_to_path(str(root / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(root / "server.crt"))
    client.private_key_pem.write_to_path(str(root / "client.key"))
    client.cert_chain_pems[0].write_to_path(str(root / "client.crt"))
    return Pki(
        ca=root / "ca.crt",
        server_cert=root / "server.crt",
        server_key=root / "server.key",
        client_cert=root / "client.crt",
        client_key=root / "client.key",
        other_ca=root / "other-ca.crt",
        operator_cert=root / "operator.crt",
        operator_key=root / "operator.key",
        rogue_cert=root / "rogue.crt",
        rogue_key=root / "rogue.key",
    )


@pytest.fixture(scope="session")
def sample_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """counter-blog-crio as the kubelet writes it: a plain tar."""
    return plain_sample("counter-blog-crio", tmp_path_factory.mktemp("samples"))


@pytest.fixture
def env(tmp_path: Path, sample_tar: Path) -> Iterator[Env]:
    environment = Env(tmp_path, sample_tar)
    yield environment
    for service in environment.services:
        service.shutdown(wait=True)


@pytest.fixture
def services() -> Iterator[list[CaptureService]]:
    """Capture services a test started, shut down after it."""
    started: list[CaptureService] = []
    yield started
    for service in started:
        service.shutdown(wait=True)
