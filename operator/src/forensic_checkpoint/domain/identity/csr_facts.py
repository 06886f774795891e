"""What a CertificateSigningRequest says, parsed: its ``spec`` (filled in by the API server from
the requester's credentials) and the PKCS#10 request inside it (filled in by the requester)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class CsrSpec:
    """``spec`` of a CertificateSigningRequest object."""

    name: str
    signer_name: str
    #: The requester, as the API server authenticated it (the requester cannot choose these).
    username: str
    extra: Mapping[str, Sequence[str]] = field(default_factory=dict)
    usages: Sequence[str] = ()
    expiration_seconds: int | None = None
    #: The PEM ``CERTIFICATE REQUEST`` (base64-decoded ``spec.request``).
    request: bytes = b""


@dataclass(frozen=True)
class RequestFacts:
    """The PKCS#10 request: what the requester asks to be certified."""

    request: x509.CertificateSigningRequest | None
    #: Why the request could not be read (``request`` is then None).
    unreadable: str = ""
    signature_valid: bool = False
    common_names: tuple[str, ...] = ()
    #: Subject attributes other than the common name (organisation, ...), as ``OID=value``.
    other_subject: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    #: Every subject alternative name that is not a DNS name (IP, URI, e-mail, other).
    other_names: tuple[str, ...] = ()
    #: ``EC P-256``, ``RSA 2048``, ...
    key: str = ""


_EC_CURVES = {"secp256r1": "EC P-256", "secp384r1": "EC P-384", "secp521r1": "EC P-521"}


def parse_request(pem: bytes) -> RequestFacts:
    try:
        request = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        return RequestFacts(
            None, unreadable=f"spec.request is not a PEM certificate request: {exc}"
        )
    subject = list(request.subject)
    cns = tuple(str(a.value) for a in subject if a.oid == NameOID.COMMON_NAME)
    others = tuple(
        f"{a.oid.dotted_string}={a.value!s}" for a in subject if a.oid != NameOID.COMMON_NAME
    )
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        general = list(san)
    except x509.ExtensionNotFound:
        general = []
    except ValueError as exc:  # a malformed extension
        return RequestFacts(request, unreadable=f"the request's extensions are malformed: {exc}")
    dns = tuple(str(n.value) for n in general if isinstance(n, x509.DNSName))
    other = tuple(
        f"{type(n).__name__}:{n.value!s}" for n in general if not isinstance(n, x509.DNSName)
    )
    return RequestFacts(
        request,
        signature_valid=request.is_signature_valid,
        common_names=cns,
        other_subject=others,
        dns_names=dns,
        other_names=other,
        key=_describe_key(request),
    )


def _describe_key(request: x509.CertificateSigningRequest) -> str:
    try:
        key = request.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"unreadable ({exc})"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _EC_CURVES.get(key.curve.name, f"EC {key.curve.name}")
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__
