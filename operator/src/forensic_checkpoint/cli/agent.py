"""`forensic-checkpoint agent`: the node agent (one per node, a DaemonSet)."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from forensic_checkpoint import logs

HELP = "Run the node agent: kubelet checkpoints, hashing, analysis, and the operator's API."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--node-name", default=env("NODE_NAME"), help="this node (env NODE_NAME)")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, else in-cluster")
    parser.add_argument("--listen-address", default="0.0.0.0")  # noqa: S104 - a DaemonSet port
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument(
        "--advertise-address",
        default=env("POD_IP") or env("HOST_IP"),
        help="host the operator reaches this agent at (default env POD_IP/HOST_IP, else the "
        "Node's InternalIP)",
    )
    tls = parser.add_argument_group("serving certificate")
    tls.add_argument(
        "--serving-certificate",
        choices=("csr", "files"),
        help="csr: make a key here and ask the operator's signer for a certificate for this "
        "node's name through a CertificateSigningRequest, renewed in time; files: serve "
        "--tls-cert/--tls-key, a certificate for <node>.agents.forensic-checkpoint.dev "
        "(default: files with --tls-cert, else csr)",
    )
    tls.add_argument("--tls-cert", type=Path, help="files: serving certificate (PEM)")
    tls.add_argument("--tls-key", type=Path, help="files: serving key (PEM)")
    tls.add_argument(
        "--certificate-lifetime",
        type=int,
        default=86400,
        help="csr: seconds of validity asked for (at least 600; the signer may give less)",
    )
    tls.add_argument(
        "--certificate-renew-fraction",
        type=float,
        default=2 / 3,
        help="csr: ask for the next certificate once this fraction of the validity passed",
    )
    parser.add_argument(
        "--operator-identity",
        required=True,
        help="the caller allowed everything: system:serviceaccount:<ns>:<sa>",
    )
    parser.add_argument(
        "--reader-identity",
        action="append",
        default=[],
        help="a caller that may only download archives and reports (repeatable): the "
        "archive-reader ServiceAccount that kubectl forensic get-archive asks a token for",
    )
    parser.add_argument(
        "--client-ca-file",
        type=Path,
        help="mTLS alternative: CA of the operator's client certificate",
    )
    parser.add_argument(
        "--operator-cert-cn", help="mTLS alternative: the operator certificate's common name"
    )
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/forensic-checkpoint"))
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("/var/lib/kubelet/checkpoints"))
    kubelet = parser.add_argument_group("kubelet")
    kubelet.add_argument(
        "--kubelet-client-certificate",
        choices=("csr",),
        help="csr: make a key here and ask the operator's signer forensic-checkpoint.dev/"
        "kubelet-client for a short-lived certificate for this node (user "
        "forensic-checkpoint:agent:<node>, group forensic-checkpoint:agents), renewed in time "
        "with a new key; the kubelets must trust that signer's CA (clientCAFile bundle)",
    )
    kubelet.add_argument(
        "--kubelet-certificate-lifetime",
        type=int,
        default=86400,
        help="csr: seconds of validity of the kubelet client certificate (at least 600; renewed "
        "at --certificate-renew-fraction of it)",
    )
    kubelet.add_argument("--kubelet-client-cert", type=Path)
    kubelet.add_argument("--kubelet-client-key", type=Path)
    kubelet.add_argument("--kubelet-ca", type=Path, help="CA of the kubelet's serving cert")
    kubelet.add_argument(
        "--kubelet-token-file", type=Path, help="bearer token instead of a client certificate"
    )
    kubelet.add_argument(
        "--kubelet-insecure-skip-tls-verify",
        action="store_true",
        help="DANGEROUS: do not verify the kubelet's certificate",
    )
    kubelet.add_argument(
        "--kubelet-timeout-margin",
        type=float,
        default=30.0,
        help="seconds the agent waits beyond the kubelet's own deadline for a checkpoint",
    )
    kubelet.add_argument(
        "--kubelet-runtime-request-timeout",
        type=float,
        default=120.0,
        help="the kubelet's runtimeRequestTimeout (2 min by default): the kubelet raises a "
        "shorter spec.timeoutSeconds to it, so the agent waits max(both) + the margin",
    )
    captures = parser.add_argument_group("archives no capture claims")
    captures.add_argument(
        "--orphan-archives",
        choices=("adopt", "delete"),
        default="adopt",
        help="adopt: keep, hash and account for them (retention applies); delete: hash, log "
        "and delete them",
    )
    captures.add_argument(
        "--orphan-grace",
        type=float,
        default=120.0,
        help="seconds an unclaimed archive must be unchanged before the sweep (every "
        "--retention-interval) handles it",
    )
    captures.add_argument(
        "--late-archive-window",
        type=float,
        default=60.0,
        help="seconds a capture watches for its archive after the agent gave up on the call",
    )
    captures.add_argument(
        "--restart-adopt-window",
        type=float,
        default=5.0,
        help="seconds a restarted agent looks for the archive of a kubelet call the restart "
        "cut (the kubelet cancels the dump when its caller dies)",
    )
    captures.add_argument(
        "--min-free-bytes",
        type=int,
        default=2 << 30,
        help="refuse a capture (InsufficientDiskSpace) while the filesystem of --checkpoint-dir "
        "or --state-dir has less free space than this or --min-free-percent (default 2 GiB)",
    )
    captures.add_argument(
        "--min-free-percent",
        type=float,
        default=5.0,
        help="the same floor as a percentage of the filesystem's size; the larger one applies",
    )
    parser.add_argument("--capture-workers", type=int, default=4)
    parser.add_argument(
        "--max-queued-captures",
        type=int,
        default=128,
        help="captures waiting for a worker at most; a new one past it is answered 503 "
        "AgentQueueFull (nothing recorded) and the operator asks again (default 128)",
    )
    parser.add_argument("--analysis-workers", type=int, default=0, help="0: min(2, CPUs)")
    parser.add_argument(
        "--analysis-timeout", type=float, default=900.0, help="seconds before an analysis is killed"
    )
    parser.add_argument("--heartbeat-interval", type=float, default=10.0)
    parser.add_argument(
        "--readiness-interval",
        type=float,
        default=60.0,
        help="seconds between readiness probes of the kubelet (0: off)",
    )
    parser.add_argument(
        "--values-file",
        type=Path,
        default=env("FORENSIC_AGENT_VALUES"),
        help="the chart's agent-values.yaml: criuConfig, export (env FORENSIC_AGENT_VALUES)",
    )
    parser.add_argument(
        "--host-root",
        type=Path,
        default=env("FORENSIC_HOST_ROOT"),
        help="the node's / as mounted here, to keep /etc/criu/runc.conf (env FORENSIC_HOST_ROOT)",
    )
    criu = parser.add_argument_group("CRIU logs of failed dumps (one of)")
    criu.add_argument(
        "--criu-log-socket",
        type=Path,
        help="ask the criu-log-reader container on this Unix socket (the chart)",
    )
    criu.add_argument(
        "--criu-log-dir",
        type=Path,
        action="append",
        default=[],
        help="read them under this runtime directory yourself (an agent on the host; repeat)",
    )
    parser.add_argument(
        "--retention-interval",
        type=float,
        default=300.0,
        help="seconds between retention passes (values 'retention'; also after each capture)",
    )
    parser.add_argument(
        "--export-retry-seconds",
        type=float,
        default=30.0,
        help="first delay before a failed export is retried (doubles, up to 15 min)",
    )
    logs.add_arguments(parser)  # --log-level, --log-format


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint.agent.identity.renewing import CsrSettings
    from forensic_checkpoint.agent.kubelet.client import KubeletAuth
    from forensic_checkpoint.agent.process import AgentConfig, AgentProcess
    from forensic_checkpoint.errors import ConfigError

    logs.configure(args.log_format, level=args.log_level)
    if not args.node_name:
        raise ConfigError("--node-name (or env NODE_NAME) is required")
    mode = args.serving_certificate or ("files" if args.tls_cert else "csr")
    csr = (
        CsrSettings(
            expiration_seconds=args.certificate_lifetime,
            renew_fraction=args.certificate_renew_fraction,
        )
        if mode == "csr"
        else None
    )
    config = AgentConfig(
        node_name=args.node_name,
        kubeconfig=args.kubeconfig,
        listen_address=args.listen_address,
        port=args.port,
        advertise_address=args.advertise_address,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        operator_identity=args.operator_identity,
        reader_identities=tuple(args.reader_identity),
        state_dir=args.state_dir,
        checkpoint_dir=args.checkpoint_dir,
        kubelet_auth=KubeletAuth(
            client_cert=args.kubelet_client_cert,
            client_key=args.kubelet_client_key,
            token_file=args.kubelet_token_file,
            ca_file=args.kubelet_ca,
            insecure_skip_tls_verify=args.kubelet_insecure_skip_tls_verify,
        ),
        kubelet_timeout_margin=args.kubelet_timeout_margin,
        kubelet_runtime_request_timeout=args.kubelet_runtime_request_timeout,
        orphan_archives=args.orphan_archives,
        orphan_grace=args.orphan_grace,
        late_archive_window=args.late_archive_window,
        restart_adopt_window=args.restart_adopt_window,
        capture_workers=args.capture_workers,
        max_queued_captures=args.max_queued_captures,
        min_free_bytes=args.min_free_bytes,
        min_free_percent=args.min_free_percent,
        analysis_workers=args.analysis_workers or None,
        analysis_timeout=args.analysis_timeout,
        heartbeat_interval=args.heartbeat_interval,
        readiness_interval=args.readiness_interval,
        values_file=args.values_file,
        host_root=args.host_root,
        criu_log_socket=args.criu_log_socket,
        criu_log_dirs=tuple(args.criu_log_dir),
        retention_interval=args.retention_interval,
        export_retry_base_seconds=args.export_retry_seconds,
        client_ca=args.client_ca_file,
        operator_cert_cn=args.operator_cert_cn,
        csr=csr,
        kubelet_csr=CsrSettings(
            expiration_seconds=args.kubelet_certificate_lifetime,
            renew_fraction=args.certificate_renew_fraction,
        )
        if args.kubelet_client_certificate == "csr"
        else None,
    )
    agent = AgentProcess(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent.start()
    try:
        stop.wait()
    finally:
        agent.stop(wait=True)
    return 0
