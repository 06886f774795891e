"""`forensic-checkpoint operator`: run the ForensicCheckpoint operator."""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
from pathlib import Path

from forensic_checkpoint import logs

HELP = "Run the ForensicCheckpoint operator (kopf) against a cluster."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from forensic_checkpoint.controller.alerts import config as alerts_config
    from forensic_checkpoint.controller.config import DEFAULT_AGENT_TOKEN_SECONDS
    from forensic_checkpoint.controller.identity import config as signer_config

    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch this namespace (repeatable)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster)")
    parser.add_argument(
        "--agent-ca-file", type=Path, help="CA that signed the agents' serving certificates"
    )
    parser.add_argument(
        "--agent-token-seconds",
        type=int,
        default=DEFAULT_AGENT_TOKEN_SECONDS,
        help="lifetime of the tokens the operator asks for, one per node's agent audience "
        "(at least 600; default: %(default)s)",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        default=True,
        help="no kopf peering (the default; run one replica)",
    )
    parser.add_argument(
        "--peering", dest="standalone", action="store_false", help="use kopf peering"
    )
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    parser.add_argument("--health-port", type=int, help="serve /healthz on this port")
    parser.add_argument(
        "--poll-interval", type=float, default=1.0, help="seconds between agent polls"
    )
    parser.add_argument(
        "--agent-wait",
        type=float,
        default=60.0,
        help="seconds a new checkpoint waits for its node's agent before failing",
    )
    parser.add_argument(
        "--agent-heartbeat-grace",
        type=float,
        default=40.0,
        help="seconds without an agent heartbeat before its ForensicNode turns Ready Unknown",
    )
    parser.add_argument(
        "--archive-poll-interval",
        type=float,
        default=300.0,
        help="seconds between sweeps of the kept archives (one call per node's agent)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    logs.add_arguments(parser)  # --log-level, --log-format
    alerts_config.add_arguments(parser)
    signer_config.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint.controller.alerts import config as alerts_config
    from forensic_checkpoint.controller.config import OperatorConfig
    from forensic_checkpoint.controller.identity import config as signer_config
    from forensic_checkpoint.controller.runner import run_operator

    # Not kopf.configure(): it would add a second handler and write every line twice.
    logs.configure(args.log_format, level="DEBUG" if args.verbose else args.log_level)
    config = OperatorConfig(
        namespaces=tuple(args.namespace),
        all_namespaces=args.all_namespaces,
        kubeconfig=args.kubeconfig,
        agent_ca_file=args.agent_ca_file,
        agent_token_seconds=args.agent_token_seconds,
        standalone=args.standalone,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        poll_interval=args.poll_interval,
        agent_wait=timedelta(seconds=args.agent_wait),
        archive_poll_interval=args.archive_poll_interval,
        heartbeat_grace=timedelta(seconds=args.agent_heartbeat_grace),
        alerts=alerts_config.from_arguments(args),  # None without --alerts-port
        signer=signer_config.from_arguments(args),  # None without --agent-ca-key-file
    )
    asyncio.run(run_operator(config))
    return 0
