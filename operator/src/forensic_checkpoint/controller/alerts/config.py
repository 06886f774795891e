"""Settings of the alert receiver (operator flags; see ``add_arguments``)."""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from forensic_checkpoint.domain.alerts.policy import Limits
from forensic_checkpoint.domain.alerts.target import TargetMapping
from forensic_checkpoint.errors import ConfigError

DEFAULT_PORT = 8443
#: Alertmanager's own max_alerts default is unlimited, and a storm sends thousands of alerts in
#: one notification: 6,500 alerts with a dozen labels, two annotations and a generatorURL are
#: 4.4 MiB (about 700 bytes each), which decode to about 35 MiB at peak. 8 MiB holds some
#: 12,000 such alerts, bounded well inside the operator's memory limit (512 MiB in the chart).
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class AlertReceiverConfig:
    host: str = "0.0.0.0"  # noqa: S104 - a cluster Service fronts it; NetworkPolicy restricts
    port: int = DEFAULT_PORT
    #: File holding the bearer token (a mounted Secret key); re-read when it changes.
    token_file: Path | None = None
    #: Serve HTTPS with this certificate and key; with ``client_ca_file`` also require a client
    #: certificate signed by that CA (mutual TLS).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    client_ca_file: Path | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    limits: Limits = field(default_factory=Limits)
    mapping: TargetMapping = field(default_factory=TargetMapping)
    #: How stale the cached policies and active-capture count may get (seconds).
    refresh_seconds: float = 5.0
    #: At the concurrency cap, a refusal needs a count of active captures at most this old.
    count_fresh_seconds: float = 1.0

    def validate(self) -> None:
        if self.token_file is None and self.client_ca_file is None:
            raise ConfigError(
                "the alert receiver needs --alerts-token-file or --alerts-client-ca (mTLS); "
                "it does not run unauthenticated"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("--alerts-tls-cert and --alerts-tls-key go together")
        if self.client_ca_file is not None and self.tls_cert_file is None:
            raise ConfigError("mutual TLS (--alerts-client-ca) needs --alerts-tls-cert/-key")
        if self.limits.max_concurrent < 1 or self.limits.max_queued < 0:
            raise ConfigError("--alerts-max-concurrent must be >= 1, --alerts-max-queued >= 0")
        if self.max_body_bytes < 1024:
            raise ConfigError("--alerts-max-body must be at least 1024 bytes")

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
            if self.client_ca_file is not None:
                context.load_verify_locations(cafile=str(self.client_ca_file))
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"alert receiver TLS files: {exc}") from exc
        return context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The receiver's flags, for the operator's CLI."""
    group = parser.add_argument_group("alert receiver")
    group.add_argument("--alerts-port", type=int, default=None, help="serve alert webhooks here")
    group.add_argument("--alerts-host", default="0.0.0.0")  # noqa: S104
    group.add_argument("--alerts-token-file", type=Path, help="bearer token (a Secret key)")
    group.add_argument("--alerts-tls-cert", type=Path)
    group.add_argument("--alerts-tls-key", type=Path)
    group.add_argument("--alerts-client-ca", type=Path, help="require client certs (mTLS)")
    group.add_argument(
        "--alerts-max-body",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="bytes; a larger body is answered 413 (default 8 MiB, some 12,000 alerts)",
    )
    group.add_argument("--alerts-rate", type=float, default=Limits.rate_per_second)
    group.add_argument("--alerts-burst", type=int, default=Limits.burst)
    group.add_argument(
        "--alerts-max-concurrent",
        type=int,
        default=Limits.max_concurrent,
        help="alert captures at their kubelet call at once; more wait in phase Queued",
    )
    group.add_argument(
        "--alerts-max-queued",
        type=int,
        default=Limits.max_queued,
        help="alert captures waiting in phase Queued at most; past it: QueueFull refusals",
    )
    group.add_argument("--alerts-namespace-label", default=TargetMapping.namespace_label)
    group.add_argument("--alerts-pod-label", default=TargetMapping.pod_label)
    group.add_argument("--alerts-container-label", default=TargetMapping.container_label)


def from_arguments(args: argparse.Namespace) -> AlertReceiverConfig | None:
    """The config the flags describe, or None when ``--alerts-port`` was not given."""
    if args.alerts_port is None:
        return None
    config = AlertReceiverConfig(
        host=args.alerts_host,
        port=args.alerts_port,
        token_file=args.alerts_token_file,
        tls_cert_file=args.alerts_tls_cert,
        tls_key_file=args.alerts_tls_key,
        client_ca_file=args.alerts_client_ca,
        max_body_bytes=args.alerts_max_body,
        limits=Limits(
            rate_per_second=args.alerts_rate,
            burst=args.alerts_burst,
            max_concurrent=args.alerts_max_concurrent,
            max_queued=args.alerts_max_queued,
        ),
        mapping=TargetMapping(
            namespace_label=args.alerts_namespace_label,
            pod_label=args.alerts_pod_label,
            container_label=args.alerts_container_label,
        ),
    )
    config.validate()
    return config
