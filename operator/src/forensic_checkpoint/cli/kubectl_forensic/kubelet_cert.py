"""``kubectl forensic kubelet-cert``: issue the agents' kubelet client certificate through a
CertificateSigningRequest (signer ``kubernetes.io/kube-apiserver-client``) into a Secret."""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import time

from forensic_checkpoint.errors import ClusterError, ForensicCheckpointError
from forensic_checkpoint.k8s.certificates import CertificateSigningRequests, TlsSecrets
from forensic_checkpoint.k8s.client import ApiClient

KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
_LABELS = {"app.kubernetes.io/part-of": "forensic-checkpoint"}


def run_plugin(api: ApiClient, args: argparse.Namespace) -> int:
    key_pem, csr_pem = new_key_and_csr(args.user)
    name = f"{args.secret}-{secrets.token_hex(4)}"
    cert_pem = issue_client_certificate(
        api, name, csr_pem, days=args.days, approve=args.approve, timeout=args.wait_timeout
    )
    TlsSecrets(api).apply(
        args.namespace,
        args.secret,
        cert_pem,
        key_pem,
        labels=_LABELS,
        field_manager="kubectl-forensic",
    )
    print(f"secret/{args.secret} in {args.namespace}: client certificate for user {args.user!r}")
    return 0


def new_key_and_csr(user: str) -> tuple[bytes, bytes]:
    """An ECDSA P-256 key and a CSR with CN = user and no groups (O), made locally: the private
    key never leaves this process except into the Secret."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def issue_client_certificate(
    api: ApiClient, name: str, csr_pem: bytes, *, days: int, approve: bool, timeout: float
) -> bytes:
    """Submit the CSR to ``kubernetes.io/kube-apiserver-client``, approve it (needs the
    ``approve`` verb on that signer), and wait for the signer's certificate."""
    csrs = CertificateSigningRequests(api)
    csrs.create(
        name,
        csr_pem,
        signer=KUBELET_CLIENT_SIGNER,
        usages=("digital signature", "client auth"),
        expiration_seconds=days * 86400,
        labels=_LABELS,
    )
    try:
        if approve:
            csrs.approve(
                name,
                reason="ForensicCheckpointKubeletClient",
                message="kubectl forensic kubelet-cert",
            )
        else:
            print(f"waiting for approval: kubectl certificate approve {name}", file=sys.stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            outcome = csrs.outcome(name)
            if outcome.refusal is not None:
                raise ClusterError(f"CSR {name} {outcome.refusal}")
            if outcome.certificate is not None:
                return outcome.certificate
            time.sleep(0.5)
        raise ClusterError(
            f"CSR {name} was not signed within {timeout:.0f} s (is a signer running?)"
        )
    finally:
        # The certificate is in the Secret (or the request failed); the CSR is no longer needed.
        with contextlib.suppress(ForensicCheckpointError):
            csrs.delete(name)
