"""The signer's settings (``forensic-checkpoint operator --agent-ca-key-file ...``
``--kubelet-client-ca-key-file ...``): one CA per signer, either or both."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from forensic_checkpoint.agent_identity import service_account_of
from forensic_checkpoint.errors import ConfigError

#: A week: an agent renews long before (2/3 of its own, shorter, request).
DEFAULT_MAX_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class AgentSignerConfig:
    #: The agents' CA: its certificate (also what the operator verifies agents with) and key;
    #: None: no serving certificates are signed.
    ca_file: Path | None
    ca_key_file: Path | None
    #: The agents' ServiceAccount user: the only requester whose CSRs are approved.
    agent_user: str
    #: Longest validity issued, whatever the agent asks for.
    max_seconds: int = DEFAULT_MAX_SECONDS
    #: Seconds before a pass in which an action failed is tried again (a watch wakes the others).
    interval: float = 2.0
    #: The kubelet client CA (in the kubelets' client CA bundle, not the API server's) and key,
    #: for signer forensic-checkpoint.dev/kubelet-client; None: not signed.
    kubelet_client_ca_file: Path | None = None
    kubelet_client_ca_key_file: Path | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "agent certificates (signer forensic-checkpoint.dev/agent-serving)"
    )
    group.add_argument(
        "--agent-ca-key-file",
        type=Path,
        help="key of --agent-ca-file: sign each agent's serving certificate for its own node "
        "(agents with --serving-certificate=csr); without it no CSR is approved",
    )
    group.add_argument(
        "--kubelet-client-ca-file",
        type=Path,
        help="CA of the agents' kubelet client certificates (signer forensic-checkpoint.dev/"
        "kubelet-client), which the kubelets trust (their client CA bundle) and the API "
        "server does not",
    )
    group.add_argument(
        "--kubelet-client-ca-key-file",
        type=Path,
        help="key of --kubelet-client-ca-file: sign each agent's kubelet client certificate "
        "for its own node (agents with --kubelet-client-certificate=csr)",
    )
    group.add_argument(
        "--agent-identity",
        help="the agents' ServiceAccount user, system:serviceaccount:<ns>:<sa>: the only "
        "requester of agent certificates",
    )
    group.add_argument(
        "--agent-certificate-max-seconds",
        type=int,
        default=DEFAULT_MAX_SECONDS,
        help="longest validity of an agent certificate (default: %(default)s)",
    )
    group.add_argument(
        "--signer-interval",
        type=float,
        default=2.0,
        help="seconds before an agent certificate request whose approval or signature failed "
        "is tried again (new and changed requests are seen at once, through a watch)",
    )


def from_arguments(args: argparse.Namespace) -> AgentSignerConfig | None:
    if args.agent_ca_key_file is None and args.kubelet_client_ca_key_file is None:
        return None
    if args.agent_ca_key_file is not None and args.agent_ca_file is None:
        raise ConfigError("--agent-ca-key-file needs --agent-ca-file (the CA's certificate)")
    if (args.kubelet_client_ca_file is None) != (args.kubelet_client_ca_key_file is None):
        raise ConfigError("--kubelet-client-ca-file and --kubelet-client-ca-key-file go together")
    if service_account_of(str(args.agent_identity or "")) is None:
        raise ConfigError(
            "signing agent certificates needs --agent-identity "
            "system:serviceaccount:<namespace>:<name>"
        )
    if args.agent_certificate_max_seconds < 600:
        raise ConfigError("--agent-certificate-max-seconds must be at least 600")
    return AgentSignerConfig(
        ca_file=args.agent_ca_file if args.agent_ca_key_file is not None else None,
        ca_key_file=args.agent_ca_key_file,
        agent_user=args.agent_identity,
        max_seconds=args.agent_certificate_max_seconds,
        interval=args.signer_interval,
        kubelet_client_ca_file=args.kubelet_client_ca_file,
        kubelet_client_ca_key_file=args.kubelet_client_ca_key_file,
    )
