"""`forensic-checkpoint operator`: run the ForensicCheckpoint operator."""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from forensic_checkpoint import logs

if TYPE_CHECKING:
    from forensic_checkpoint.controller.config import LeaderElection

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
    _leader_election_arguments(parser)
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


def _leader_election_arguments(parser: argparse.ArgumentParser) -> None:
    from forensic_checkpoint.controller.config import LeaderElection

    default = LeaderElection()
    group = parser.add_argument_group(
        "leader election (several replicas, docs/install.md#high-availability)"
    )
    group.add_argument(
        "--leader-elect",
        action="store_true",
        help="act only while holding a coordination.k8s.io/v1 Lease; exit when it is lost",
    )
    group.add_argument("--leader-elect-lease", default=default.lease_name, help="the Lease's name")
    group.add_argument(
        "--leader-elect-namespace",
        help="the Lease's namespace (default: the operator ServiceAccount's)",
    )
    group.add_argument(
        "--leader-elect-alerts-service",
        help="with the alert receiver: the Service (without a selector) whose EndpointSlice the "
        "leader points at itself, so that no alert reaches a standby",
    )
    group.add_argument(
        "--pod-ip", default=os.environ.get("POD_IP"), help="this replica's address ($POD_IP)"
    )
    for flag, value, text in (
        ("lease-duration", default.timings.lease_duration, "a standby waits this long"),
        ("renew-deadline", default.timings.renew_deadline, "the leader exits after this long"),
        ("retry-period", default.timings.retry_period, "between two tries"),
    ):
        group.add_argument(
            f"--leader-elect-{flag}",
            type=float,
            default=value,
            help=f"seconds: {text} (%(default)s)",
        )


def _leader_election(args: argparse.Namespace) -> LeaderElection | None:
    from forensic_checkpoint.controller.config import LeaderElection
    from forensic_checkpoint.domain.leadership.lease import LeaseTimings
    from forensic_checkpoint.errors import ConfigError

    if not args.leader_elect:
        return None
    if not args.standalone:
        raise ConfigError("--leader-elect and --peering exclude each other")
    timings = LeaseTimings(
        args.leader_elect_lease_duration,
        args.leader_elect_renew_deadline,
        args.leader_elect_retry_period,
    )
    try:
        timings.validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if args.leader_elect_alerts_service and not (args.pod_ip and args.alerts_port):
        raise ConfigError("--leader-elect-alerts-service needs --alerts-port and --pod-ip")
    return LeaderElection(
        args.leader_elect_lease,
        args.leader_elect_namespace,
        timings,
        alerts_service=args.leader_elect_alerts_service,
        pod_ip=args.pod_ip,
    )


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
        leader_election=_leader_election(args),  # None without --leader-elect
    )
    asyncio.run(run_operator(config))
    return 0
