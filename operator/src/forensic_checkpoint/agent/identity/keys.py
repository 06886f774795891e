"""The agent's serving key and certificate on disk, and the request for a certificate.

Certificate and key live in one PEM file (mode 0600, in the agent's state directory), replaced
atomically: the TLS server (``agent.http.server.ReloadingTLS``, given the file as both
certificate and key) can never load a new certificate with the old key. The key never leaves
the node; only the request's public key goes to the API server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from forensic_checkpoint.agent.jobs import write_private


@dataclass(frozen=True)
class ServedCertificate:
    """The validity of the certificate in the file, and whether it is for ``server_name``."""

    not_before: datetime
    not_after: datetime
    names: tuple[str, ...]
    serial: int


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def request_pem(key: ec.EllipticCurvePrivateKey, server_name: str) -> bytes:
    """A PKCS#10 request for exactly ``server_name`` (the only subject name and DNS name the
    operator's signer accepts for this node)."""
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def describe(certificate_pem: bytes) -> ServedCertificate:
    """The first certificate of ``certificate_pem``; ``ValueError`` if there is none."""
    cert = x509.load_pem_x509_certificate(certificate_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return ServedCertificate(
        cert.not_valid_before_utc, cert.not_valid_after_utc, names, cert.serial_number
    )


def matches(key: ec.EllipticCurvePrivateKey, certificate_pem: bytes) -> bool:
    """Whether the certificate certifies ``key`` (what the signer returned is for our request)."""
    cert = x509.load_pem_x509_certificate(certificate_pem)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    return cert.public_key().public_bytes(serialization.Encoding.DER, spki) == ours


def save(path: Path, key: ec.EllipticCurvePrivateKey, certificate_pem: bytes) -> None:
    """Replace ``path`` with certificate + key, atomically, mode 0600."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, certificate_pem + key_pem)


def load(path: Path) -> ServedCertificate | None:
    """The certificate kept in ``path`` by :func:`save`, if the file holds a readable one."""
    try:
        return describe(path.read_bytes())
    except (OSError, ValueError):
        return None
