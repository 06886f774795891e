"""The runner's one call: with ``--leader-elect``, serve the health port and wait for the Lease
before anything else starts (kopf, the kept-archive sweep, the receiver, the signer, the node
liveness monitor); without it, return at once."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import uuid
from typing import Literal

from forensic_checkpoint.controller.config import OperatorConfig
from forensic_checkpoint.controller.leadership.elector import LeaderElector
from forensic_checkpoint.controller.leadership.health import serve_health
from forensic_checkpoint.controller.metrics import LEADER
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint.k8s.leases import Leases
from forensic_checkpoint.k8s.reviews import self_subject
from forensic_checkpoint.k8s.tokens import service_account_of

log = logging.getLogger(__name__)


def replica_identity() -> str:
    """controller-runtime's: the host (the pod's name) and a random suffix, so that a restarted
    process never mistakes the Lease of its previous life for its own."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:12]}"


async def campaign(
    config: OperatorConfig,
    api: ApiClient,
    stop_flag: asyncio.Event | threading.Event | None = None,
) -> LeaderElector | Literal[False] | None:
    """The elector once this replica leads; ``None`` without leader election; ``False`` when
    ``stop_flag`` was set while it stood by."""
    election = config.leader_election
    if election is None:
        return None
    namespace = election.namespace
    if namespace is None:
        namespace, _ = service_account_of(await asyncio.to_thread(self_subject, api))
    LEADER.set(0)
    elector = LeaderElector(
        Leases(api, namespace, timeout=max(1.0, election.timings.renew_deadline / 2)),
        election.lease_name,
        replica_identity(),
        election.timings,
    )
    if config.health_port is not None:
        # Kept for the process's life: it outlives kopf's stop, the process ends soon after.
        elector.health = await serve_health(config.health_port, lambda: elector.leading)
    log.info(
        "leader election on the Lease %s/%s as %s (lease %g s, renew deadline %g s, retry %g s)",
        namespace,
        election.lease_name,
        elector.identity,
        election.timings.lease_duration,
        election.timings.renew_deadline,
        election.timings.retry_period,
    )
    stopped = stop_flag.is_set if stop_flag is not None else (lambda: False)
    if not await elector.acquire(stopped):
        return False
    return elector
