"""The operator's settings (from the CLI flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from forensic_checkpoint.controller.alerts.config import AlertReceiverConfig
from forensic_checkpoint.controller.identity.config import AgentSignerConfig
from forensic_checkpoint.domain.leadership.lease import LeaseTimings

#: Lifetime of a token for one node's agent (TokenRequest's minimum is 600 s).
DEFAULT_AGENT_TOKEN_SECONDS = 3600


@dataclass(frozen=True)
class LeaderElection:
    """Act only while holding a coordination.k8s.io/v1 Lease (controller/leadership/)."""

    lease_name: str = "forensic-checkpoint-operator"
    #: None: the namespace of the operator's own ServiceAccount.
    namespace: str | None = None
    timings: LeaseTimings = field(default_factory=LeaseTimings)
    #: The alert Service (without a selector) the leader points at itself, at ``pod_ip``.
    alerts_service: str | None = None
    pod_ip: str | None = None


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    kubeconfig: str | None = None
    agent_ca_file: Path | None = None
    agent_token_seconds: int = DEFAULT_AGENT_TOKEN_SECONDS
    standalone: bool = True
    metrics_port: int | None = None
    health_port: int | None = None
    #: How often a ForensicCheckpoint's capture task asks its agent for progress.
    poll_interval: float = 1.0
    #: While a container is at its kubelet call or analysed, one status request waits this long
    #: for the job to move on (the agent answers when it does, or when the archive's sha256 is
    #: recorded): no poll interval on the capture path.
    capture_wait: float = 20.0
    #: How long a new ForensicCheckpoint waits for an agent to appear before failing.
    agent_wait: timedelta = timedelta(seconds=60)
    #: Extra time on top of the kubelet timeout before an unfinished capture fails.
    capture_grace: timedelta = timedelta(minutes=5)
    #: Retries of archive deletion before a deleted CR lets go of its node's files.
    delete_retries: int = 5
    #: How often the kept archives (finished captures whose archive is still on the node) are
    #: swept for custody facts (a retention deletion), with one call per node's agent
    #: (controller/capture/kept_archives.py); exports in progress are polled at 5 x
    #: ``poll_interval`` by the object's capture task.
    archive_poll_interval: float = 300.0
    #: Serve the alert webhooks (docs/alerts.md) in the operator's event loop; None: off.
    alerts: AlertReceiverConfig | None = None
    #: Approve and sign the agents' serving certificates (controller/identity/); None: off.
    signer: AgentSignerConfig | None = None
    #: A ForensicNode whose heartbeat is older than this turns Ready Unknown (controller/liveness/).
    heartbeat_grace: timedelta = timedelta(seconds=40)
    #: Leader election among replicas; None: act at once (one replica).
    leader_election: LeaderElection | None = None
