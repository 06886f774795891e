"""Shared helpers of the agent tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class Pki:
    """A CA, a serving certificate for 127.0.0.1/localhost and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verifying with it must fail


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
