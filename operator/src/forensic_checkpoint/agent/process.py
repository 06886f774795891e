"""Wiring of one agent process: cluster client, kubelet client, job service, API server,
heartbeat, evidence export and retention. Tests start it in-process; ``forensic-checkpoint
agent`` starts it from flags."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from forensic_checkpoint import __version__
from forensic_checkpoint.agent.capture.adoption import DEFAULT_RESTART_ADOPT_WINDOW
from forensic_checkpoint.agent.capture.analysis_retry import AnalysisRetrier
from forensic_checkpoint.agent.capture.analysis_runner import (
    Analyzer,
    ProcessAnalyzer,
    default_workers,
)
from forensic_checkpoint.agent.capture.disk_floor import (
    DEFAULT_MIN_FREE_BYTES,
    DEFAULT_MIN_FREE_PERCENT,
    DiskFloor,
)
from forensic_checkpoint.agent.capture.orphans import DEFAULT_GRACE, OrphanKeeper, OrphanPolicy
from forensic_checkpoint.agent.capture.service import (
    DEFAULT_LATE_ARCHIVE_WINDOW,
    DEFAULT_MAX_QUEUED,
    CaptureService,
)
from forensic_checkpoint.agent.evidence.export_worker import ExportWorker
from forensic_checkpoint.agent.evidence.retention_keeper import RetentionKeeper, policy_from_values
from forensic_checkpoint.agent.http.auth import Authenticator
from forensic_checkpoint.agent.http.server import AgentServer, ReloadingTLS
from forensic_checkpoint.agent.identity import keys
from forensic_checkpoint.agent.identity.renewing import CsrSettings, RenewedCertificate
from forensic_checkpoint.agent.jobs import JobStore, utcnow
from forensic_checkpoint.agent.kubelet.client import (
    DEFAULT_RUNTIME_REQUEST_TIMEOUT,
    KubeletAuth,
    KubeletClient,
)
from forensic_checkpoint.agent.kubelet.criu_logs import criu_log_source
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.agent.node import Heartbeat, ensure_forensic_node, kubelet_endpoint
from forensic_checkpoint.agent.readiness.probe import ReadinessProber
from forensic_checkpoint.agent.values import AgentValues, criu_observer, export_config
from forensic_checkpoint.agent_identity import agent_audience, service_account_of
from forensic_checkpoint.api.forensicnode import AgentStatus
from forensic_checkpoint.domain.identity.profiles import KUBELET_CLIENT, SERVING, Profile
from forensic_checkpoint.errors import ClusterError, ConfigError
from forensic_checkpoint.k8s import client as k8s_client
from forensic_checkpoint.k8s.certificates import CertificateSigningRequests
from forensic_checkpoint.k8s.nodes import ForensicNodes, Nodes
from forensic_checkpoint.k8s.reviews import AccessReviews

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    node_name: str
    #: files mode: the node's serving certificate and key (None in csr mode).
    tls_cert: Path | None
    tls_key: Path | None
    operator_identity: str
    kubelet_auth: KubeletAuth
    state_dir: Path
    checkpoint_dir: Path
    kubeconfig: str | None = None
    listen_address: str = "0.0.0.0"  # noqa: S104 - the DaemonSet's pod port
    port: int = 8443
    advertise_address: str | None = None
    kubelet_timeout_margin: float = 30.0
    #: The kubelet's runtimeRequestTimeout: it never gives a checkpoint less time than this.
    kubelet_runtime_request_timeout: float = DEFAULT_RUNTIME_REQUEST_TIMEOUT
    #: Seconds a restarted agent looks for the archive of a call the restart cut.
    restart_adopt_window: float = DEFAULT_RESTART_ADOPT_WINDOW
    #: Seconds a job watches for a late archive after the agent gave up on its kubelet call.
    late_archive_window: float = DEFAULT_LATE_ARCHIVE_WINDOW
    #: What to do with archives no capture claims (adopt: keep and account; delete).
    orphan_archives: str = OrphanPolicy.ADOPT.value
    #: An unclaimed archive is swept once unchanged for this long (every retention interval).
    orphan_grace: float = DEFAULT_GRACE
    capture_workers: int = 4
    #: Captures waiting for a worker at most; more are refused with 503 (``--max-queued-captures``).
    max_queued_captures: int = DEFAULT_MAX_QUEUED
    #: Captures are refused while free space is below the larger of these (``.disk_floor``).
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    min_free_percent: float = DEFAULT_MIN_FREE_PERCENT
    analysis_workers: int | None = None
    analysis_timeout: float = 900.0
    heartbeat_interval: float = 10.0
    #: Seconds between readiness rounds (one probe call to the kubelet each); 0 disables them.
    readiness_interval: float = 60.0
    #: The chart's agent-values.yaml (criuConfig, export); None: defaults.
    values_file: Path | None = None
    #: The node's root filesystem as mounted in the agent (for /etc/criu); None: not visible.
    host_root: Path | None = None
    #: CRIU logs of failed dumps: the reader container's socket (the chart), or runtime
    #: directories the agent reads itself (an agent on the host); neither: not read.
    criu_log_socket: Path | None = None
    criu_log_dirs: tuple[Path, ...] = ()
    token_cache_seconds: float = 10.0
    #: Callers that may only download archives and reports (``--reader-identity``).
    reader_identities: tuple[str, ...] = ()
    #: Seconds between retention passes (there is one after each capture too); 0: only those.
    retention_interval: float = 300.0
    #: First delay before a failed export is tried again; doubles up to the maximum.
    export_retry_base_seconds: float = 30.0
    export_retry_max_seconds: float = 900.0
    #: mTLS alternative to the token: client CA and the operator certificate's common name.
    client_ca: Path | None = None
    operator_cert_cn: str | None = None
    #: csr mode: the agent makes its own key and asks the operator's signer for a certificate
    #: for its node (``agent.identity``); None: files mode (``tls_cert``/``tls_key``).
    csr: CsrSettings | None = None
    #: ``--kubelet-client-certificate=csr``: the agent makes its own key and asks the operator's
    #: signer for a short-lived kubelet client certificate for its node; None: ``kubelet_auth``.
    kubelet_csr: CsrSettings | None = None


class AgentProcess:
    def __init__(self, config: AgentConfig, *, analyzer: Analyzer | None = None) -> None:
        if service_account_of(config.operator_identity) is None:
            raise ConfigError(
                "--operator-identity must be system:serviceaccount:<namespace>:<name>"
            )
        self.kubelet_identity: RenewedCertificate | None = None
        if config.kubelet_csr is not None:
            config = replace(
                config,
                kubelet_auth=replace(
                    config.kubelet_auth,
                    client_pem=config.state_dir / "kubelet-client" / "kubelet-client.pem",
                ),
            )
        config.kubelet_auth.validate()
        if (config.client_ca is None) != (config.operator_cert_cn is None):
            raise ConfigError("--client-ca-file and --operator-cert-cn go together")
        self.config = config
        self.api = k8s_client.from_environment(config.kubeconfig)
        nodes = Nodes(self.api)
        self.forensic_nodes = ForensicNodes(self.api)
        host, port = kubelet_endpoint(nodes, config.node_name)
        node = nodes.get(config.node_name)  # owns the ForensicNode: it goes with the Node
        self.node_uid = node.uid if node is not None else ""
        self.kubelet = KubeletClient(
            config.node_name,
            host,
            port,
            config.kubelet_auth,
            timeout_margin=config.kubelet_timeout_margin,
            runtime_request_timeout=config.kubelet_runtime_request_timeout,
            criu_logs=criu_log_source(config.criu_log_socket, config.criu_log_dirs),
        )
        self.advertise = config.advertise_address or host
        self.metrics = AgentMetrics()
        self.values = AgentValues.load(config.values_file)
        exporting = export_config(
            self.values.export, state_dir=config.state_dir, node_name=config.node_name
        )
        store = JobStore(config.state_dir)
        analysis_workers = config.analysis_workers or default_workers()
        self.service = CaptureService(
            node_name=config.node_name,
            store=store,
            kubelet=lambda: self.kubelet,
            analyzer=analyzer or ProcessAnalyzer(analysis_workers, timeout=config.analysis_timeout),
            checkpoint_dir=config.checkpoint_dir,
            metrics=self.metrics,
            capture_workers=config.capture_workers,
            analysis_workers=analysis_workers,
            kubelet_timeout_margin=config.kubelet_timeout_margin,
            kubelet_runtime_request_timeout=config.kubelet_runtime_request_timeout,
            restart_adopt_window=config.restart_adopt_window,
            late_archive_window=config.late_archive_window,
            export_enabled=exporting is not None,
            disk_floor=DiskFloor(config.min_free_bytes, config.min_free_percent),
            max_queued=config.max_queued_captures,
        )
        # Every archive in the checkpoint directory belongs to a job: the orphan keeper looks
        # for late archives of abandoned calls and sweeps up the rest.
        self.orphans = OrphanKeeper(
            service=self.service,
            policy=OrphanPolicy.parse(config.orphan_archives),
            grace=config.orphan_grace,
            interval=config.retention_interval,
        )
        self.exports = (
            ExportWorker(
                store=store,
                config=exporting,
                node_name=config.node_name,
                checkpoint_dir=config.checkpoint_dir,
                metrics=self.metrics,
                retry_base_seconds=config.export_retry_base_seconds,
                retry_max_seconds=config.export_retry_max_seconds,
            )
            if exporting is not None
            else None
        )
        policy = policy_from_values(self.values.retention)
        self.retention = (
            RetentionKeeper(
                store=store,
                policy=policy,
                node_name=config.node_name,
                checkpoint_dir=config.checkpoint_dir,
                metrics=self.metrics,
                interval=config.retention_interval,
            )
            if policy is not None
            else None
        )
        if self.exports is not None:
            self.exports.follow(self.service)
        if self.retention is not None:
            self.service.on_finished.append(self.retention.wake)
            self.orphans.on_change.append(self.retention.wake)
        self.service.on_finished.append(self.orphans.wake)
        self.analysis_retry = AnalysisRetrier(self.service)
        reviews = AccessReviews(self.api)
        audience = agent_audience(config.node_name)  # a token for another node's agent fails
        self.authenticator = Authenticator(
            lambda token: reviews.token_review(token, [audience])[:2],
            config.operator_identity,
            readers=frozenset(config.reader_identities),
            cache_seconds=config.token_cache_seconds,
        )
        self.identity, self._tls = self._serving_identity(config)
        if config.kubelet_csr is not None:
            self.kubelet_identity = self._own_certificate(
                config.kubelet_csr, KUBELET_CLIENT, "kubelet-client"
            )
            self.kubelet_identity.load()
        self.server = AgentServer(
            (config.listen_address, config.port),
            service=self.service,
            authenticator=self.authenticator,
            tls=self._serving_tls,
            operator_cert_cn=config.operator_cert_cn if config.client_ca else None,
        )
        self._serving = False
        self.started_at = utcnow()
        self.heartbeat = Heartbeat(
            self.forensic_nodes,
            config.node_name,
            self.agent_status,
            interval=config.heartbeat_interval,
            owner_uid=self.node_uid,
            on_marked_unknown=self._probe_readiness_now,
        )
        self.readiness = (
            ReadinessProber(
                nodes,
                self.forensic_nodes,
                config.node_name,
                self.kubelet,
                interval=config.readiness_interval,
                criu_config=criu_observer(self.values.criu_config, config.host_root),
            )
            if config.readiness_interval > 0
            else None
        )
        self.metrics.watch_readiness(self._readiness_metric)
        self.metrics.watch_certificates(self._certificate_expiry)
        self._serve = threading.Thread(target=self.server.serve_forever, name="api", daemon=True)

    # --- the serving certificate --------------------------------------------------------------

    def _serving_identity(
        self, config: AgentConfig
    ) -> tuple[RenewedCertificate | None, ReloadingTLS | None]:
        """files mode: the given pair; csr mode: the certificate kept from the last run, if it
        is still good, else none yet (the server starts once the signer issued one)."""
        if config.csr is None:
            if config.tls_cert is None or config.tls_key is None:
                raise ConfigError("--serving-certificate=files needs --tls-cert and --tls-key")
            return None, self._reloading(config.tls_cert, config.tls_key)
        if config.tls_cert is not None or config.tls_key is not None:
            raise ConfigError("--tls-cert/--tls-key go with --serving-certificate=files only")
        identity = self._own_certificate(config.csr, SERVING, "serving")
        if identity.load():
            return identity, self._reloading(identity.pem_file, identity.pem_file)
        return identity, None

    def _own_certificate(
        self, settings: CsrSettings, profile: Profile, name: str
    ) -> RenewedCertificate:
        """A certificate the agent asks the operator's signer for (key and certificate in
        ``<state dir>/<name>/<name>.pem``)."""
        return RenewedCertificate(
            self.config.node_name,
            self.config.state_dir / name,
            CertificateSigningRequests(self.api),
            settings,
            profile=profile,
            file_name=name,
        )

    def _reloading(self, cert: Path, key: Path) -> ReloadingTLS:
        try:
            return ReloadingTLS(cert, key, self.config.client_ca)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"serving certificate {cert}: {exc}") from exc

    def _serving_tls(self) -> ssl.SSLContext:
        if self._tls is None:  # never: the server starts with the first certificate
            raise ConnectionAbortedError("no serving certificate yet")
        return self._tls()

    def _certificate_ready(self) -> None:
        """The first certificate of csr mode is on disk: serve, and say so at once."""
        if self.identity is None:
            return
        if self._tls is None:
            try:
                self._tls = self._reloading(self.identity.pem_file, self.identity.pem_file)
            except ConfigError as exc:
                log.error("cannot serve the new certificate: %s", exc.message)
                return
        self._start_serving()
        try:
            self.heartbeat.beat()
        except ClusterError as exc:
            log.warning(
                "heartbeat for ForensicNode %s failed: %s", self.config.node_name, exc.message
            )

    def _readiness_metric(self) -> tuple[str, str, str] | None:
        last = self.readiness.last if self.readiness is not None else None
        if last is None:
            return None
        return self.config.node_name, str(last.status.value), last.reason

    def _certificate_expiry(self) -> dict[str, datetime | None]:
        """Read from the files at each scrape: csr mode renews them, files mode mounts a
        Secret that may be rotated under the agent."""
        auth = self.config.kubelet_auth
        serving = self.identity.pem_file if self.identity else self.config.tls_cert
        return {
            "kubelet-client": keys.not_after(auth.client_cert or auth.client_pem),
            "serving": keys.not_after(serving),
        }

    def _probe_readiness_now(self) -> None:
        if self.readiness is not None:
            self.readiness.probe_now()

    def _start_serving(self) -> None:
        if not self._serving:
            self._serving = True
            self._serve.start()

    @property
    def endpoint(self) -> str:
        host = f"[{self.advertise}]" if ":" in self.advertise else self.advertise
        return f"https://{host}:{self.server.port}"

    def agent_status(self) -> AgentStatus:
        current = self.identity.current if self.identity else None
        return AgentStatus(
            endpoint=self.endpoint,
            heartbeat_time=utcnow(),
            version=__version__,
            pod_name=os.environ.get("POD_NAME", ""),
            pod_namespace=os.environ.get("POD_NAMESPACE", ""),
            started_at=self.started_at,
            kubelet_endpoint=self.kubelet.base_url,
            queue_depth=self.service.queue_depth(),
            captures_in_progress=self.service.in_progress(),
            certificate_not_after=current.not_after if current else None,
            certificate_pending=self.identity.pending if self.identity else "",
        )

    def start(self) -> None:
        self.service.start()
        if self.exports is not None:
            self.exports.start()  # resumes exports cut short by the last stop
        if self.retention is not None:
            self.retention.start()
        self.orphans.start()
        self.analysis_retry.start()
        if self.identity is None:
            self._start_serving()
        # The operator trusts a ForensicNode once its heartbeat is fresh; its readiness checks
        # must be this agent's by then, not the ones a previous agent left.
        ensure_forensic_node(self.forensic_nodes, self.config.node_name, owner_uid=self.node_uid)
        if self.readiness is not None:
            self.readiness.start()
        if self.identity is not None:
            # Serves at once with a certificate kept from the last run; else once issued, and
            # until then the heartbeat says what it waits for.
            self.identity.start(on_ready=self._certificate_ready)
        if self.kubelet_identity is not None:
            # Until the first is issued, kubelet calls fail with KubeletTLSError saying so; once
            # it is, readiness is probed again at once.
            self.kubelet_identity.start(on_ready=self._probe_readiness_now)
        self.heartbeat.start()
        log.info(
            "agent for node %s listening on %s (kubelet %s)",
            self.config.node_name,
            self.endpoint,
            self.kubelet.base_url,
        )

    def stop(self, wait: bool = False) -> None:
        """Stop serving and taking jobs; with ``wait``, until the running ones have finished
        (a kubelet call cut short is cancelled by the kubelet)."""
        if self.readiness is not None:
            self.readiness.stop()
        self.heartbeat.stop()
        for identity in (self.identity, self.kubelet_identity):
            if identity is not None:
                identity.stop()
        if self._serving:
            self.server.shutdown()
        self.server.server_close()
        for worker in (self.exports, self.retention, self.orphans, self.analysis_retry):
            if worker is not None:
                worker.stop()
        self.service.shutdown(wait=wait)
