"""Assemble and run the operator in-process: settings, login, handlers, kopf's main loop.

kopf runs with its own registry (no import-time decorators) and with settings chosen for this
CRD: progress and diff-base in annotations under our own prefix (the status schema is declared,
so anything kopf wrote there would be pruned), our own finalizer name, and only errors of
kopf's own log turned into Kubernetes Events (ours are posted explicitly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import aiohttp
import kopf
from prometheus_client import start_http_server

from forensic_checkpoint.agent_identity import agent_audience
from forensic_checkpoint.api.base import GROUP
from forensic_checkpoint.controller.alerts.kopf_wiring import register as register_alerts
from forensic_checkpoint.controller.capture.admission import AlertAdmission, seed_from
from forensic_checkpoint.controller.capture.agent_client import AgentClient, tls_context
from forensic_checkpoint.controller.capture.agent_tokens import AgentTokens
from forensic_checkpoint.controller.capture.checkpoints import CheckpointController
from forensic_checkpoint.controller.capture.kept_archives import KeptArchives
from forensic_checkpoint.controller.capture.wiring import register
from forensic_checkpoint.controller.config import OperatorConfig
from forensic_checkpoint.controller.identity.signer import AgentSigner
from forensic_checkpoint.controller.leadership.alert_endpoint import (
    register as register_alert_endpoint,
)
from forensic_checkpoint.controller.leadership.campaign import campaign
from forensic_checkpoint.controller.liveness.monitor import NodeLiveness
from forensic_checkpoint.errors import ClusterError, ConfigError
from forensic_checkpoint.k8s.certificates import CertificateSigningRequests
from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
from forensic_checkpoint.k8s.client import ApiClient, from_environment, pooled
from forensic_checkpoint.k8s.connection import connection_facts
from forensic_checkpoint.k8s.nodes import ForensicNodes, Nodes
from forensic_checkpoint.k8s.pods import Pods
from forensic_checkpoint.k8s.rbac import KubeletClientGrants
from forensic_checkpoint.k8s.reviews import self_subject
from forensic_checkpoint.k8s.tokens import ServiceAccountTokens, service_account_of

ANNOTATION_PREFIX = f"operator.{GROUP}"
FINALIZER = f"{GROUP}/cleanup"
#: Threads for the (synchronous) API calls, and connections to the API server. asyncio's
#: default is ``CPUs + 4`` threads, 6 on two cores: a burst of 1,000 captures, each writing its
#: status three or four times, queued behind 6 calls at a time, each waiting for the API server.
API_THREADS = 32
#: Connections to the agents: each node's agent serves 64 at most (agent/http/server.py); a
#: capturing container's status request holds one until its kubelet call ends, so aiohttp's
#: default of 100 in all queued a burst over 100 nodes behind 100 requests.
AGENT_CONNECTIONS, AGENT_CONNECTIONS_PER_NODE = 1024, 32
#: Objects per page of the operator's listings (kopf's default: one response with all).
LISTING_PAGE = 200
#: Seconds an idle per-object worker of kopf waits for the object's next event before it exits
#: (kopf's default: 5); it holds the last body it handled meanwhile.
WORKER_IDLE_SECONDS = 0.5


class SlimDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, built without copying what it throws away: kopf deep-copies the whole
    body on every watch event and then drops the status and the metadata; our status (the
    custody chain, the summary) and the managed fields make that copy a fifth of the
    operator's CPU in a burst. The essence is the same: spec, labels, annotations."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        metadata = body.get("metadata") or {}
        slim = {key: value for key, value in body.items() if key not in ("status", "metadata")}
        slim["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
        return super().build(body=kopf.Body(cast(kopf.RawBody, slim)), extra_fields=extra_fields)


def configure(settings: kopf.OperatorSettings) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = SlimDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.ERROR
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # Namespace/CRD scanning needs cluster-wide list rights the operator does not have.
    settings.scanning.disabled = True
    # The first listing after a start (the body of every kept archive) comes in pages, and a
    # worker that handled its object lets go of its body soon: the listing's bodies are then
    # alive a page at a time, not all at once. CPython keeps every memory arena such a peak
    # took (an object's few long-lived entries pin them), so the peak stayed as the RSS at
    # rest: with 10,000 kept archives 395 MiB, now 140 (benchmarks/operator_memory.py).
    settings.watching.chunk_size = LISTING_PAGE
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS


def alert_admission(config: OperatorConfig, api: ApiClient) -> AlertAdmission | None:
    """The queue of alert captures under the receiver's cap (docs/alerts.md); none without the
    receiver (nothing then creates alert captures)."""
    if config.alerts is None:
        return None
    return AlertAdmission(config.alerts.limits.max_concurrent, seed_from(api))


async def _agent_tokens(api: ApiClient, lifetime_seconds: int) -> AgentTokens:
    """Tokens of the operator's own ServiceAccount, one audience per node's agent. One is
    issued at start, so that a missing grant fails the start, not the first capture."""
    if lifetime_seconds < 600:
        raise ConfigError("--agent-token-seconds must be at least 600 (the TokenRequest minimum)")
    namespace, account = service_account_of(await asyncio.to_thread(self_subject, api))
    repository = ServiceAccountTokens(api)

    def issue(audience: str) -> str:
        return repository.request(
            namespace, account, audience=audience, expiration_seconds=lifetime_seconds
        )

    try:
        await asyncio.to_thread(issue, agent_audience("start-up-check"))
    except ClusterError as exc:
        raise ConfigError(
            f"the operator cannot ask for tokens for the agents ({exc.message}): it needs "
            f"create on serviceaccounts/token for {namespace}/{account} (the chart grants it)"
        ) from exc
    return AgentTokens(issue, lifetime_seconds)


async def run_operator(
    config: OperatorConfig,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run until ``stop_flag`` is set or the process is signalled."""
    if not config.all_namespaces and not config.namespaces:
        raise ConfigError("give --namespace (repeatable) or --all-namespaces")
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(API_THREADS, thread_name_prefix="api")
    )
    api = pooled(await asyncio.to_thread(from_environment, config.kubeconfig), API_THREADS)
    tls = tls_context(config.agent_ca_file)
    tokens = await _agent_tokens(api, config.agent_token_seconds)
    signer = (
        AgentSigner(
            config.signer, CertificateSigningRequests(api), Nodes(api), KubeletClientGrants(api)
        )
        if config.signer is not None
        else None
    )

    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        facts = connection_facts(api)  # at each (re-)login: a pod's token is rotated
        return kopf.ConnectionInfo(
            server=facts.server,
            ca_path=facts.ca_path,
            insecure=facts.insecure,
            scheme="Bearer" if facts.token else None,
            token=facts.token,
            certificate_path=facts.certificate_path,
            private_key_path=facts.private_key_path,
        )

    if config.metrics_port is not None:
        start_http_server(config.metrics_port)
    # With leader election, nothing below starts before this replica holds the Lease.
    elector = await campaign(config, api, stop_flag)
    if elector is False:
        return  # stopped while standing by

    connector = aiohttp.TCPConnector(
        limit=AGENT_CONNECTIONS, limit_per_host=AGENT_CONNECTIONS_PER_NODE
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        agents = AgentClient(session, tokens, tls)
        controller = CheckpointController(
            config,
            checkpoints=ForensicCheckpoints(api),
            forensic_nodes=ForensicNodes(api),
            pods=Pods(api),
            agents=agents,
            # The receiver below runs with this identity: it is who may create alert provenance.
            whoami=lambda: self_subject(api),
            admission=alert_admission(config, api),
        )
        # Kept archives: one batched call per node's agent, not a daemon per object.
        kept = KeptArchives(
            controller,
            checkpoints=ForensicCheckpoints(api),
            forensic_nodes=ForensicNodes(api),
            agents=agents,
            interval=config.archive_poll_interval,
        )
        # In-flight captures: one task each, none for a finished object (controller/capture/
        # in_flight.py); kopf has no daemon handler, so it keeps no copy of every body.
        captures = register(registry, controller, kept)
        if config.alerts is not None:
            # Same identity as the operator: deploy/rbac/operator.yaml carries the receiver's
            # rules (k8s.alert_captures.RBAC_RULES).
            register_alerts(registry, config.alerts, api)
            register_alert_endpoint(registry, config, api, elector)  # leader election only
        # The agents' certificates are signed whatever kopf does: no agent serves without one.
        signing = asyncio.create_task(signer.run()) if signer is not None else None
        liveness = NodeLiveness(ForensicNodes(api), grace=config.heartbeat_grace)
        watching = asyncio.create_task(liveness.run())
        try:
            await kopf.operator(
                registry=registry,
                standalone=config.standalone,
                clusterwide=config.all_namespaces,
                namespaces=() if config.all_namespaces else config.namespaces,
                liveness_endpoint=(
                    f"http://0.0.0.0:{config.health_port}/healthz"
                    if config.health_port is not None and elector is None
                    else None  # under leader election the campaign serves the health port
                ),
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
        finally:
            await captures.close()
            await kept.stop()
            for task in (signing, watching):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if elector is not None:
                await elector.release()
