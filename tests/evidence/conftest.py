"""A real S3-compatible server for the evidence tests: moto's server mode on loopback, spoken
to over HTTP by boto3 exactly as the agent speaks to MinIO or AWS."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from pyrage import x25519
from tests.factories import random_archive, s3_client

ACCESS_KEY = "evidence-test"
SECRET_KEY = "evidence-test-secret"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A plain boto3 client for the test's own look at the store (not the exporter's)."""
    return s3_client(s3_endpoint, ACCESS_KEY, SECRET_KEY)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"evidence-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, str]:
    """A 23 MiB archive of random bytes (5 parts of 5 MiB), with its sha256."""
    return random_archive(tmp_path / "checkpoint-web-app.tar", 23 * 1024 * 1024)


@pytest.fixture
def age_identity(tmp_path: Path) -> tuple[Path, str]:
    """An age-keygen style identity file and its recipient."""
    identity = x25519.Identity.generate()
    path = tmp_path / "analyst.key"
    path.write_text(f"# created: test\n# public key: {identity.to_public()}\n{identity}\n")
    return path, str(identity.to_public())
