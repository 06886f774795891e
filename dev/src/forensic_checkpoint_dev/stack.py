"""The whole system on a dev cluster as local processes: the operator and one agent per fake
node, each running as its ServiceAccount with exactly the RBAC in ``deploy/rbac/``, behind the
chart's admission policies (from ``deploy/forensic-checkpoint.yaml``, the rendered chart).

Used by the operator's end-to-end tests, the capture-load benchmark and
``forensic-checkpoint-dev demo``. Nothing here is faked beyond the kubelet: tokens come from the
TokenRequest API, each agent serves its own node's certificate from a CA made here (issued here,
or through the operator's signer with ``serving_certificate="csr"``), and the operator verifies
each as its node's agent.
Over 400 lines because one class starts, watches and stops every process of the stack with the
credentials each needs (minted by :mod:`.identities`); the tests drive it as one object.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from forensic_checkpoint.agent_identity import agent_audience, agent_server_name
from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.errors import ClusterError, ToolError
from forensic_checkpoint.k8s.client import ApiClient, close
from forensic_checkpoint_dev import identities
from forensic_checkpoint_dev.apiserver import custom_object
from forensic_checkpoint_dev.cluster import access, pki, processes
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.identities import Identity
from forensic_checkpoint_dev.manifests import apply_documents, apply_manifests, chart_admission
from forensic_checkpoint_dev.repo import REPO_ROOT

RBAC_DIR = REPO_ROOT / "deploy" / "rbac"
SYSTEM_NAMESPACE = "forensic-checkpoint"
OPERATOR_SA = "forensic-checkpoint-operator"
AGENT_SA = "forensic-checkpoint-agent"
#: deploy/rbac/archive-reader.yaml: the agents let it download, and nothing else.
ARCHIVE_READER_SA = "forensic-checkpoint-archive-reader"
ARCHIVE_READER_USER = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{ARCHIVE_READER_SA}"
FCP = ForensicCheckpoint.crd
FNODE = ForensicNode.crd


def _forensic_node(api: ApiClient, node_name: str) -> dict[str, Any]:
    return dict(custom_object(api, FNODE, "get", node_name))


@dataclass
class LocalStack:
    cluster: DevCluster
    root: Path
    operator: Identity
    agent: Identity
    #: The agents' CA; the operator verifies agents with it and signs their CSRs with its key.
    agent_ca: pki.CertPair
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Each agent's ``criu-log-reader`` (as the chart runs one beside it).
    criu_log_readers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    operator_process: subprocess.Popen[bytes] | None = None
    health_port: int = 0
    metrics_port: int = 0
    #: The operator's alert receiver (``start_operator(alerts=True)``): port and bearer token.
    alerts_port: int | None = None
    alerts_token_file: Path | None = None
    #: The operator's ``--archive-poll-interval`` (a test of retention facts shortens it).
    archive_poll_interval: float = 300.0
    #: The operator's ``--agent-heartbeat-grace`` (the agents here beat every 2 s).
    heartbeat_grace: float = 40.0

    @classmethod
    def prepare(cls, cluster: DevCluster, root: Path) -> LocalStack:
        """Apply deploy/rbac and the chart's admission policies, mint both ServiceAccounts'
        tokens, make the agents' CA."""
        root.mkdir(parents=True, exist_ok=True)
        api = cluster.admin_client()
        try:
            apply_manifests(
                api,
                [RBAC_DIR / f"{part}.yaml" for part in ("operator", "agent", "archive-reader")],
            )
            apply_documents(api, chart_admission())
            operator, agent = (
                identities.mint(
                    api,
                    server=cluster.server,
                    ca_file=cluster.ca_file,
                    namespace=SYSTEM_NAMESPACE,
                    account=sa,
                    token_file=root / f"{sa}.token",
                )
                for sa in (OPERATOR_SA, AGENT_SA)
            )
        finally:
            close(api)
        tls = root / "agent-tls"
        ca = pki.create_ca(
            pki.CertPair(tls / "ca.crt", tls / "ca.key"), "forensic-checkpoint-agents"
        )
        return cls(cluster, root, operator, agent, ca)

    def agent_certificate(self, node_name: str) -> pki.CertPair:
        """The node's own serving certificate (files mode), from the agents' CA: its node's
        name, and 127.0.0.1/localhost for the tests that call the agent directly."""
        base = self.root / "agents" / node_name
        name = agent_server_name(node_name)
        return pki.issue(
            self.agent_ca,
            pki.CertPair(base / "tls.crt", base / "tls.key"),
            name,
            server_names=(name, "127.0.0.1", "localhost"),
        )

    # --- agents -------------------------------------------------------------------------

    def start_agent(
        self,
        node_name: str,
        *,
        wait: float = 60.0,
        kubelet_ca: Path | None = None,
        kubelet_token_file: Path | None = None,
        kubelet_client_cert: pki.CertPair | None = None,
        values_file: Path | None = None,
        host_root: bool = False,
        serving_certificate: str = "files",
        kubelet_client_certificate: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """Start the node's agent; ``kubelet_ca``/``kubelet_token_file`` replace the right ones
        (to provoke TLS and authentication failures at the kubelet); ``kubelet_client_cert``
        replaces the token with a client certificate; ``values_file`` is the chart's agent
        values (export, retention, criuConfig), and ``host_root`` lets the agent keep this
        machine's /etc/criu (a real node only); ``serving_certificate="csr"`` lets the agent ask
        the operator's signer for its certificate (the operator must run) instead of serving one
        issued here; ``kubelet_client_certificate="csr"`` lets it ask the operator's signer for
        its kubelet client certificate (the fake kubelets trust that CA); ``extra_args`` go last
        on its command line.

        Returns once the agent has published a heartbeat *and* its first readiness round: the
        operator fails captures on a node whose checks fail, so a check left over from an
        earlier agent must not decide the next capture.
        """
        node = self.cluster.node(node_name)
        base = self.root / "agents" / node_name
        base.mkdir(parents=True, exist_ok=True)
        identity = self.node_agent_identity(node_name)
        started = datetime.now(UTC)
        argv = [
            sys.executable, "-m", "forensic_checkpoint", "agent",
            "--node-name", node_name,
            "--kubeconfig", str(identity.kubeconfig),
            "--listen-address", "127.0.0.1",
            "--port", "0",
            "--advertise-address", "127.0.0.1",
            "--operator-identity", self.operator.user,
            "--reader-identity", ARCHIVE_READER_USER,
            "--state-dir", str(base / "state"),
            "--checkpoint-dir", str(node.checkpoint_dir),
            "--kubelet-ca", str(kubelet_ca or node.serving_ca),
            "--heartbeat-interval", "2",
            "--kubelet-timeout-margin", "5",
        ]  # fmt: skip
        if kubelet_client_certificate is not None:
            argv += ["--kubelet-client-certificate", kubelet_client_certificate]
        elif kubelet_client_cert is not None:
            argv += [
                "--kubelet-client-cert", str(kubelet_client_cert.cert),
                "--kubelet-client-key", str(kubelet_client_cert.key),
            ]  # fmt: skip
        else:
            argv += ["--kubelet-token-file", str(kubelet_token_file or identity.token_file)]
        if serving_certificate == "files":
            pair = self.agent_certificate(node_name)
            argv += ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key)]
        else:
            argv += ["--serving-certificate", serving_certificate]
        if host_root:
            argv += ["--host-root", "/"]
        argv += ["--criu-log-socket", str(self._start_criu_log_reader(node_name))]
        if values_file is not None:
            argv += ["--values-file", str(values_file), "--export-retry-seconds", "1"]
        argv += extra_args
        self.agents[node_name] = processes.spawn(
            argv, self.root / "logs" / f"agent-{node_name}.log", die_with_parent=True
        )
        api = self.cluster.admin_client()
        try:
            if not processes.wait_until(
                lambda: self._heartbeat_since(api, node_name, started), wait, interval=0.2
            ):
                raise ToolError(
                    f"agent on {node_name} did not publish a heartbeat (csr mode: or got no "
                    f"certificate); see {self.root}/logs"
                )
            if not processes.wait_until(
                lambda: self._probed_since(api, node_name, started), wait, interval=0.2
            ):
                raise ToolError(
                    f"agent on {node_name} did not publish readiness; see {self.root}/logs"
                )
        finally:
            close(api)

    def operator_token_for(self, node_name: str) -> str:
        """A token of the operator's ServiceAccount for ``node_name``'s agent audience: what the
        operator sends that agent (a test calling an agent directly acts as the operator)."""
        api = self.cluster.admin_client()
        try:
            return access.request_token(
                api, SYSTEM_NAMESPACE, OPERATOR_SA, audiences=[agent_audience(node_name)]
            )
        finally:
            close(api)

    def node_agent_identity(self, node_name: str) -> Identity:
        """The agent ServiceAccount's token bound to ``node_name``'s Node object, and a
        kubeconfig using it: what the DaemonSet pod on that node gets, with the node claim the
        chart's admission policy checks."""
        api = self.cluster.admin_client()
        try:
            return identities.mint(
                api,
                server=self.cluster.server,
                ca_file=self.cluster.ca_file,
                namespace=SYSTEM_NAMESPACE,
                account=AGENT_SA,
                token_file=self.root / "agents" / node_name / "agent.token",
                node=node_name,
            )
        finally:
            close(api)

    @property
    def criu_log_dir(self) -> Path:
        """The fake nodes' runtime directory: a test puts ``<id>/criu-dump.log`` here and names
        it in a fault; the real node's is containerd's task directory."""
        return self.root / "criu-logs"

    def _start_criu_log_reader(self, node_name: str) -> Path:
        """Start the node's ``criu-log-reader`` on a fresh socket; returns the socket."""
        self._stop_criu_log_reader(node_name)
        real = self.cluster.real_node
        self.criu_log_dir.mkdir(parents=True, exist_ok=True)
        runtime = real.criu_log_dir if real and real.name == node_name else self.criu_log_dir
        # Short: a Unix socket path has at most 107 bytes.
        sock = Path(f"/tmp/fc-{os.getpid()}-{secrets.token_hex(3)}.sock")  # noqa: S108
        argv = [sys.executable, "-m", "forensic_checkpoint", "criu-log-reader",
                "--socket", str(sock), "--dir", str(runtime)]  # fmt: skip
        self.criu_log_readers[node_name] = processes.spawn(
            argv, self.root / "logs" / f"criu-log-reader-{node_name}.log", die_with_parent=True
        )
        if not processes.wait_until(sock.exists, 30, interval=0.05):
            raise ToolError(f"criu-log-reader of {node_name} did not start; see {self.root}/logs")
        return sock

    def _stop_criu_log_reader(self, node_name: str) -> None:
        proc = self.criu_log_readers.pop(node_name, None)
        if proc is not None:
            processes.stop_group(proc.pid, grace=5.0)

    def _probed_since(self, api: ApiClient, node_name: str, since: datetime) -> bool:
        """Whether every readiness check was probed after ``since``. The times carry
        microseconds, so a round of the previous agent in the same second does not count."""
        fnode = _forensic_node(api, node_name)
        checks = (fnode.get("status") or {}).get("checks") or []
        times = [c.get("lastProbeTime") for c in checks]
        return bool(times) and all(
            t and datetime.fromisoformat(t.replace("Z", "+00:00")) >= since for t in times
        )

    def readiness(self, node_name: str) -> dict[str, Any]:
        """The node's ForensicNode ``Ready`` condition (empty before the first round)."""
        api = self.cluster.admin_client()
        try:
            fnode = _forensic_node(api, node_name)
        finally:
            close(api)
        conditions = (fnode.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == "Ready"), {})

    def _heartbeat_since(self, api: ApiClient, node_name: str, since: datetime) -> bool:
        proc = self.agents[node_name]
        if proc.poll() is not None:
            raise ToolError(
                f"agent on {node_name} exited ({proc.returncode}); see {self.root}/logs"
            )
        try:
            fnode = _forensic_node(api, node_name)
        except ClusterError:
            return False
        agent = (fnode.get("status") or {}).get("agent") or {}
        beat = agent.get("heartbeatTime")
        if not beat or not agent.get("endpoint") or agent.get("certificatePending"):
            return False  # not serving yet (csr mode: no certificate yet)
        return datetime.fromisoformat(beat.replace("Z", "+00:00")) >= since.replace(microsecond=0)

    def stop_agent(self, node_name: str) -> None:
        """SIGTERM (a clean shutdown: the agent removes the CRIU config it wrote)."""
        proc = self.agents.pop(node_name)
        processes.stop_group(proc.pid, grace=10.0)
        self._stop_criu_log_reader(node_name)

    def kill_agent(self, node_name: str) -> None:
        """SIGKILL, as a crashed or evicted agent: no clean shutdown."""
        proc = self.agents.pop(node_name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self._stop_criu_log_reader(node_name)

    def agent_endpoint(self, node_name: str) -> str:
        api = self.cluster.admin_client()
        try:
            fnode = _forensic_node(api, node_name)
        finally:
            close(api)
        return str(fnode["status"]["agent"]["endpoint"])

    # --- operator -----------------------------------------------------------------------

    def start_operator(
        self,
        namespaces: list[str],
        *,
        wait: float = 60.0,
        alerts: bool | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """Start the operator; with ``alerts`` it also serves the alert webhooks on
        ``alerts_port`` (loopback, bearer ``alerts_token_file``), as ``--alerts-port`` does in a
        cluster. ``None`` keeps what the previous start chose (a restart keeps the receiver).
        ``extra_args`` go last (e.g. ``--alerts-max-concurrent``)."""
        if alerts is None:
            alerts = self.alerts_port is not None
        self.health_port = processes.free_port()
        self.metrics_port = processes.free_port()
        argv = [
            sys.executable, "-m", "forensic_checkpoint", "operator",
            "--kubeconfig", str(self.operator.kubeconfig),
            "--agent-ca-file", str(self.agent_ca.cert),
            "--agent-ca-key-file", str(self.agent_ca.key),
            "--agent-identity", self.agent.user,
            "--kubelet-client-ca-file", str(self.cluster.forensic_kubelet_client_ca.cert),
            "--kubelet-client-ca-key-file", str(self.cluster.forensic_kubelet_client_ca.key),
            "--signer-interval", "0.5",
            "--health-port", str(self.health_port),
            "--metrics-port", str(self.metrics_port),
            "--poll-interval", "0.5",
            "--agent-wait", "20",
            "--archive-poll-interval", str(self.archive_poll_interval),
            "--agent-heartbeat-grace", str(self.heartbeat_grace),
            "--log-format", "json",
        ]  # fmt: skip
        for ns in namespaces:
            argv += ["--namespace", ns]
        if alerts:
            if self.alerts_token_file is None:
                self.alerts_token_file = self.root / "alerts.token"
                identities.write_private(self.alerts_token_file, secrets.token_urlsafe(24))
            self.alerts_port = self.alerts_port or processes.free_port()
            argv += [
                "--alerts-port", str(self.alerts_port),
                "--alerts-host", "127.0.0.1",
                "--alerts-token-file", str(self.alerts_token_file),
            ]  # fmt: skip
        argv += list(extra_args)
        self.operator_process = processes.spawn(
            argv, self.root / "logs" / "operator.log", die_with_parent=True
        )
        url = f"http://127.0.0.1:{self.health_port}/healthz"

        def healthy() -> bool:
            proc = self.operator_process
            if proc is None or proc.poll() is not None:
                raise ToolError(f"operator exited; see {self.root}/logs/operator.log")
            return processes.http_ok(url, timeout=1)

        if not processes.wait_until(healthy, wait, interval=0.2):
            raise ToolError(f"operator not healthy within {wait:.0f} s; see {self.root}/logs")
        if alerts and not processes.wait_until(self._alerts_healthy, wait, interval=0.2):
            raise ToolError(f"alert receiver not answering; see {self.root}/logs/operator.log")

    @property
    def alerts_url(self) -> str:
        if self.alerts_port is None:
            raise ToolError("the operator was started without the alert receiver")
        return f"http://127.0.0.1:{self.alerts_port}"

    def _alerts_healthy(self) -> bool:
        try:
            return requests.get(f"{self.alerts_url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def post_alerts(self, route: str, payload: dict[str, Any]) -> requests.Response:
        """POST ``payload`` to the operator's receiver (``alertmanager`` or ``falcosidekick``)."""
        if self.alerts_token_file is None:
            raise ToolError("the operator was started without the alert receiver")
        token = self.alerts_token_file.read_text().strip()
        return requests.post(
            f"{self.alerts_url}/v1/alerts/{route}",
            json=payload,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def kill_operator(self) -> None:
        proc = self.operator_process
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self.operator_process = None

    def stop(self) -> None:
        """Stop everything this stack started (SIGTERM, then SIGKILL), agents and operator."""
        procs = [*self.agents.values(), *self.criu_log_readers.values()]
        if self.operator_process is not None:
            procs.append(self.operator_process)
        for proc in procs:
            processes.stop_group(proc.pid, grace=5.0)
            proc.poll()
        self.agents.clear()
        self.criu_log_readers.clear()
        self.operator_process = None

    # --- ForensicCheckpoints ------------------------------------------------------------

    def create_checkpoint(
        self,
        namespace: str,
        name: str,
        spec: dict[str, Any],
        *,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        api = self.cluster.admin_client()
        body = {
            "apiVersion": FCP.api_version,
            "kind": FCP.kind,
            "metadata": {"name": name, "annotations": dict(annotations or {})},
            "spec": spec,
        }
        try:
            return dict(custom_object(api, FCP, "create", body, namespace))
        finally:
            close(api)

    def get_checkpoint(self, namespace: str, name: str) -> dict[str, Any] | None:
        api = self.cluster.admin_client()
        try:
            return dict(custom_object(api, FCP, "get", name, namespace))
        except ClusterError as exc:
            if exc.status_code == 404:
                return None
            raise
        finally:
            close(api)

    def wait_phase(
        self,
        namespace: str,
        name: str,
        phases: tuple[str, ...] = ("Completed", "Failed"),
        *,
        timeout: float = 120.0,
        predicate: Any = None,
    ) -> dict[str, Any]:
        """The object once ``status.phase`` is one of ``phases`` (and ``predicate(obj)``)."""
        found: dict[str, Any] = {}

        def check() -> bool:
            obj = self.get_checkpoint(namespace, name) or {}
            status = obj.get("status") or {}
            if status.get("phase") in phases and (predicate is None or predicate(obj)):
                found.update(obj)
                return True
            return False

        if not processes.wait_until(check, timeout, interval=0.25):
            last = self.get_checkpoint(namespace, name)
            raise ToolError(
                f"{namespace}/{name} not in {phases} within {timeout:.0f} s: "
                f"{json.dumps((last or {}).get('status'))[:2000]}"
            )
        return found

    def delete_checkpoint(self, namespace: str, name: str) -> None:
        api = self.cluster.admin_client()
        try:
            custom_object(api, FCP, "delete", name, namespace)
        finally:
            close(api)
