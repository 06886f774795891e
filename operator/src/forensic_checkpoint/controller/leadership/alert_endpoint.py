"""With leader election, the alert receiver runs on the leader only (it starts with kopf), and
the leader points the alert Service at itself once its receiver listens: a standby never gets
an alert it could not act on. Why not a receiver on every replica: its storm limits (rate
buckets, dedupe windows, the queue-full Events) and the policies' status tallies are per
process, so two receivers behind one Service would let twice the configured rate through and
write conflicting tallies."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from forensic_checkpoint.controller.config import OperatorConfig
from forensic_checkpoint.controller.leadership.elector import LeaderElector
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint.k8s.endpoints import LeaderEndpoints

log = logging.getLogger(__name__)

#: Where ``controller.alerts.kopf_wiring`` keeps its server once it listens (kopf's memo).
RECEIVER_MEMO_KEY = "alert_server"


def register(
    registry: kopf.OperatorRegistry,
    config: OperatorConfig,
    api: ApiClient,
    elector: LeaderElector | None,
) -> None:
    """After the receiver's own start-up handler (kopf runs them in this order): nothing without
    leader election, the receiver, or ``--leader-elect-alerts-service``."""
    election = config.leader_election
    if elector is None or config.alerts is None or election is None:
        return
    service, ip = election.alerts_service, election.pod_ip
    if not service or not ip:
        return
    port = config.alerts.port
    endpoints = LeaderEndpoints(api, elector.leases.namespace)

    @kopf.on.startup(registry=registry)
    async def _point_alerts_here(memo: Any, **_: Any) -> None:
        if memo.get(RECEIVER_MEMO_KEY) is None:  # its start failed: it retries, and so do we
            raise kopf.TemporaryError("the alert receiver does not listen yet", delay=2)
        await asyncio.to_thread(
            endpoints.point, service, ip=ip, port=port, port_name="alerts", leader=elector.identity
        )
        log.info("the Service %s now sends alerts to this replica (%s:%d)", service, ip, port)
