"""The certificate the operator issues for an approved agent request (serving or kubelet client).

Only the public key comes from the request; everything else is set here: the subject and the
DNS names are the node's :class:`~.profiles.Subject` (the request was checked to ask for exactly
that), it cannot sign certificates (``CA:false``), and it is good for TLS servers only or TLS
clients only, as the profile says. Validity is what the agent
asked for (``spec.expirationSeconds``), at most ``max_seconds`` and never past the CA's own end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from forensic_checkpoint.domain.identity.profiles import Subject

#: The API server's floor for ``spec.expirationSeconds``.
MIN_SECONDS = 600
#: ``notBefore`` is this far in the past: a node whose clock is a little behind the operator's
#: still accepts a fresh certificate.
BACKDATE = timedelta(seconds=60)


@dataclass(frozen=True)
class SigningCA:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def load_ca(cert_pem: bytes, key_pem: bytes) -> SigningCA:
    """One of the agents' CAs; ``ValueError`` unless the files are a CA certificate and its key."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"the CA key is a {type(key).__name__}: use an EC or RSA key")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise ValueError("the CA key does not belong to the CA certificate")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ValueError("the CA certificate is not a CA (basicConstraints CA:true)")
    return SigningCA(cert, key)


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def lifetime(requested_seconds: int | None, max_seconds: int) -> timedelta:
    """min(requested, max); the max when the request names none."""
    seconds = max_seconds if requested_seconds is None else min(requested_seconds, max_seconds)
    return timedelta(seconds=max(seconds, MIN_SECONDS))


def issue(
    request: x509.CertificateSigningRequest,
    *,
    subject: Subject,
    ca: SigningCA,
    now: datetime,
    valid_for: timedelta,
) -> bytes:
    """The PEM certificate for ``subject`` with the request's public key."""
    public_key = request.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ValueError(f"cannot certify a {type(public_key).__name__}")
    not_after = min(now + valid_for, ca.certificate.not_valid_after_utc)
    names = [x509.NameAttribute(NameOID.COMMON_NAME, subject.common_name)]
    if subject.organization:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject.organization))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if subject.client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(rsa_key=isinstance(public_key, rsa.RSAPublicKey)), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(ca), critical=False)
    )
    if subject.dns_names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in subject.dns_names])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _authority_key_id(ca: SigningCA) -> x509.AuthorityKeyIdentifier:
    """The CA's own subject key identifier: how it was derived differs (Go, which makes the
    chart's CA, truncates SHA-256 since 1.25; others take SHA-1), and TLS clients find the
    issuer by it."""
    try:
        ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _key_usage(*, rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=rsa_key,  # RSA key exchange; meaningless for EC
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
