"""The agent's keys and certificates on disk (serving, kubelet client), and the requests for them.

Certificate and key live in one PEM file (mode 0600, in the agent's state directory), replaced
atomically: the TLS server (``agent.http.server.ReloadingTLS``, given the file as both
certificate and key) and the kubelet client (which loads the file on every call) can never load
a new certificate with the old key. The key never leaves
the node; only the request's public key goes to the API server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from forensic_checkpoint.agent.jobs import write_private
from forensic_checkpoint.domain.identity.profiles import Subject


@dataclass(frozen=True)
class ServedCertificate:
    """The validity of the certificate in the file, and what it certifies."""

    not_before: datetime
    not_after: datetime
    names: tuple[str, ...]
    serial: int
    subject: Subject


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def request_pem(key: ec.EllipticCurvePrivateKey, subject: Subject) -> bytes:
    """A PKCS#10 request for exactly ``subject`` (the only subject and DNS names the operator's
    signer accepts for this node)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(subject))
    if subject.dns_names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in subject.dns_names])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _name(subject: Subject) -> x509.Name:
    names = [x509.NameAttribute(NameOID.COMMON_NAME, subject.common_name)]
    if subject.organization:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject.organization))
    return x509.Name(names)


def describe(certificate_pem: bytes) -> ServedCertificate:
    """The first certificate of ``certificate_pem``; ``ValueError`` if there is none."""
    cert = x509.load_pem_x509_certificate(certificate_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    try:
        usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = []
    subject = Subject(
        common_name=_attribute(cert, NameOID.COMMON_NAME),
        organization=_attribute(cert, NameOID.ORGANIZATION_NAME),
        dns_names=names,
        client=usages == [ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return ServedCertificate(
        cert.not_valid_before_utc, cert.not_valid_after_utc, names, cert.serial_number, subject
    )


def not_after(path: Path | None) -> datetime | None:
    """The not-after of the certificate in ``path``; None without one (not issued yet, a token
    instead, or the file being replaced)."""
    if path is None:
        return None
    try:
        return describe(path.read_bytes()).not_after
    except (OSError, ValueError):
        return None


def _attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    """The subject's one ``oid`` attribute; "" when absent, and "?" when repeated (so that a
    certificate with two organisations never equals a :class:`Subject`)."""
    values = cert.subject.get_attributes_for_oid(oid)
    return "" if not values else str(values[0].value) if len(values) == 1 else "?"


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
