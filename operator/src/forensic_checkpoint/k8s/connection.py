"""The credentials of a kubernetes client as plain data, so that kopf (which has its own HTTP
stack) can log in as exactly the identity the rest of the operator uses."""

from __future__ import annotations

from dataclasses import dataclass

from forensic_checkpoint.k8s.client import ApiClient


@dataclass(frozen=True)
class ConnectionFacts:
    server: str
    ca_path: str | None
    insecure: bool
    token: str | None
    certificate_path: str | None
    private_key_path: str | None


def connection_facts(api: ApiClient) -> ConnectionFacts:
    """The client's credentials now: in a pod, the ServiceAccount token file is read again (the
    kubelet rotates it), so call this at each login rather than once."""
    cfg = api.configuration
    if cfg.refresh_api_key_hook is not None:
        cfg.refresh_api_key_hook(cfg)
    raw_token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    token: str | None = None
    if raw_token:
        # The in-cluster loader stores "bearer <token>" (lower case), a kubeconfig "Bearer ...".
        scheme, _, rest = str(raw_token).strip().partition(" ")
        token = rest.strip() if rest and scheme.lower() == "bearer" else str(raw_token).strip()
    return ConnectionFacts(
        server=str(cfg.host),
        ca_path=cfg.ssl_ca_cert or None,
        insecure=not cfg.verify_ssl,
        token=token,
        certificate_path=cfg.cert_file or None,
        private_key_path=cfg.key_file or None,
    )
