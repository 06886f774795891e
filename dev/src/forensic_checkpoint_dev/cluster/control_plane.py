"""A local control plane (etcd, kube-apiserver, kube-controller-manager) plus fake kubelets.

What controller-runtime users call envtest, plus nodes: everything listens on loopback ports
the kernel picks at start, so several clusters can run side by side. TLS everywhere (etcd
included), RBAC with the Node authoriser, ServiceAccount token issuing, and a controller manager
for the CSR signer, ServiceAccount tokens and namespace deletion. The node lifecycle controller
is deliberately not run: nothing would heartbeat, and it would taint and evict the fake nodes.

``DevCluster.start`` writes ``state.json`` in the cluster directory; ``stop_from_state`` (the CLI's
``down``) reads it to find every process group, so nothing is left running or listening.

Near 500 lines because one start/stop life cycle (ordering, retries on port clashes, the state
that ``down`` trusts) reads best in one place; the certificates and command lines
(``components``), the fake kubelets (``fake_nodes``) and the state file (``state``) are apart.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from kubernetes import client as k8s

from forensic_checkpoint.errors import ConfigError, ToolError
from forensic_checkpoint.k8s.client import ApiClient, close, from_kubeconfig
from forensic_checkpoint_dev import manifests
from forensic_checkpoint_dev.apiserver import MERGE_PATCH, call
from forensic_checkpoint_dev.cluster import access, binaries, fake_nodes, pki, processes
from forensic_checkpoint_dev.cluster.components import (
    ClusterPki,
    apiserver_args,
    controller_args,
    etcd_args,
    kcm_args,
)
from forensic_checkpoint_dev.cluster.fake_nodes import FakeNode
from forensic_checkpoint_dev.cluster.pods import create_running_pod
from forensic_checkpoint_dev.cluster.state import STATE_FILE, clear, port_clash, read_state
from forensic_checkpoint_dev.kubelet.faults import NodeSettings
from forensic_checkpoint_dev.realnode import addons
from forensic_checkpoint_dev.realnode import node as real_node
from forensic_checkpoint_dev.realnode.node import RealNode, Spawn
from forensic_checkpoint_dev.repo import REPO_ROOT

#: What a fake kubelet returns by default: the blog counter captured by containerd, the runtime
#: of the real node (gzip rootfs diff and bind-mount stubs included).
DEFAULT_ARCHIVE = REPO_ROOT / "tests" / "data" / "counter-blog-containerd.tar.zst"
CRDS_DIR = REPO_ROOT / "crds"
#: Upper bound for the API server and each fake kubelet to answer after spawning.
START_TIMEOUT = 150.0


@dataclass
class DevCluster:
    dir: Path
    server: str
    ca_file: Path  #: the cluster CA: API server trust, client CA, kubelet client CA
    ca_key: Path
    kubeconfig: Path  #: admin (system:masters)
    nodes: list[FakeNode] = field(default_factory=list)
    #: containerd + a real kubelet (``start(real_node=True)``); None on a fake-only cluster.
    real_node: RealNode | None = None
    pids: dict[str, int] = field(default_factory=dict)  #: component -> process-group leader
    #: pid -> start time, so a `down` long after (a reboot, a reused pid) kills nothing else
    pid_starts: dict[int, int] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    startup_seconds: float = 0.0

    # --- clients and identities ------------------------------------------------------------

    @property
    def ca(self) -> pki.CertPair:
        return pki.CertPair(self.ca_file, self.ca_key)

    @property
    def forensic_kubelet_client_ca(self) -> pki.CertPair:
        """forensic-checkpoint's kubelet client CA: in the fake kubelets' client CA bundle, not
        trusted by the API server; the operator signs the agents' kubelet client CSRs with it."""
        return ClusterPki(self.dir / "pki").forensic_kubelet_client_ca

    def admin_client(self) -> ApiClient:
        return from_kubeconfig(self.kubeconfig)

    def node(self, name: str) -> FakeNode | RealNode:
        for n in self.nodes:
            if n.name == name:
                return n
        if self.real_node is not None and self.real_node.name == name:
            return self.real_node
        raise ConfigError(f"no node {name!r} in this dev cluster")

    def issue_client_certificate(
        self, user: str, groups: Sequence[str] = (), *, name: str | None = None
    ) -> pki.CertPair:
        """A client certificate signed by the cluster CA (CN=user, O=groups), accepted by the
        API server and by every fake kubelet."""
        stem = name or user.replace(":", "-")
        target = pki.CertPair(
            self.dir / "clients" / f"{stem}.crt", self.dir / "clients" / f"{stem}.key"
        )
        return pki.issue(self.ca, target, user, organizations=tuple(groups), client=True)

    def create_running_pod(
        self, namespace: str, name: str, node: str, **kwargs: Any
    ) -> dict[str, Any]:
        api = self.admin_client()
        try:
            access.ensure_namespace(api, namespace)
            return create_running_pod(api, namespace, name, node, **kwargs)
        finally:
            close(api)

    # --- life cycle ------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        directory: Path,
        *,
        nodes: int = 2,
        die_with_parent: bool = False,
        build: bool = True,
        crds_dir: Path | None = CRDS_DIR,
        default_archive: Path = DEFAULT_ARCHIVE,
        runtime_version: str = NodeSettings.runtime_version,
        with_real_node: bool = False,
    ) -> DevCluster:
        """Start the control plane and ``nodes`` fake kubelets; with ``with_real_node``, one
        real node (containerd + kubelet, see :mod:`.real_node`), or
        :class:`~.real_node.RealNodeUnavailable` saying why this machine cannot run one."""
        started = time.monotonic()
        # Before anything starts: a machine that cannot run a real node says so at once.
        real = real_node.preflight() if with_real_node else None
        tools = binaries.ensure(build=build)
        directory = directory.resolve()
        if (directory / STATE_FILE).exists():
            raise ConfigError(
                f"{directory} already holds a cluster; run `forensic-checkpoint-dev cluster down` "
                "first"
            )
        for attempt in range(3):
            directory.mkdir(parents=True, exist_ok=True)
            try:
                cluster = cls._start_once(
                    directory,
                    tools,
                    nodes=nodes,
                    die_with_parent=die_with_parent,
                    crds_dir=crds_dir,
                    default_archive=default_archive,
                    runtime_version=runtime_version,
                    real=real,
                )
            except ToolError:
                # A port picked free can be taken before the server binds it (another
                # cluster starting at the same moment): start again on new ports.
                if attempt == 2 or not port_clash(directory / "logs"):
                    raise
                clear(directory)
                continue
            cluster.startup_seconds = time.monotonic() - started
            cluster._save()
            return cluster
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(
        cls,
        directory: Path,
        tools: binaries.Binaries,
        *,
        nodes: int,
        die_with_parent: bool,
        crds_dir: Path | None,
        default_archive: Path,
        runtime_version: str,
        real: tuple[binaries.NodeTools, str] | None = None,
    ) -> DevCluster:
        p = ClusterPki(directory / "pki")
        # The fake kubelets listen on, and register, the machine's address (as a real kubelet
        # must); loopback only where there is none.
        node_address = real_node.node_ip() or "127.0.0.1"
        p.create(node_names=[f"node-{i + 1}" for i in range(nodes)], node_address=node_address)
        etcd_port, etcd_peer, api_port = (processes.free_port() for _ in range(3))
        cluster = cls(
            dir=directory,
            server=f"https://127.0.0.1:{api_port}",
            ca_file=p.ca.cert,
            ca_key=p.ca.key,
            kubeconfig=directory / "admin.kubeconfig",
            ports=[etcd_port, etcd_peer, api_port],
        )
        logs = directory / "logs"
        try:
            cluster.pids["etcd"] = processes.spawn(
                etcd_args(tools.etcd, directory / "etcd", p, etcd_port, etcd_peer),
                logs / "etcd.log",
                die_with_parent=die_with_parent,
            ).pid
            cluster._save()
            cluster.pids["kube-apiserver"] = processes.spawn(
                apiserver_args(
                    tools.kube_apiserver,
                    p,
                    etcd_port,
                    api_port,
                    advertise=real[1] if real is not None else None,
                ),
                logs / "kube-apiserver.log",
                die_with_parent=die_with_parent,
            ).pid
            cluster._save()
            pki.write_kubeconfig(cluster.kubeconfig, cluster.server, p.ca.cert, p.admin)
            kcm_kubeconfig = directory / "kube-controller-manager.kubeconfig"
            pki.write_kubeconfig(kcm_kubeconfig, cluster.server, p.ca.cert, p.kcm)
            # The kubelets start while the API server comes up (they retry until it answers);
            # the controller manager gives up after 10 s without a healthy API server.
            kubelets = fake_nodes.spawn(
                directory,
                cluster.server,
                p,
                nodes,
                default_archive,
                runtime_version,
                die_with_parent=die_with_parent,
                address=node_address,
                started=cluster._started,
            )
            # Typically ready in 3-8 s; the generous bound only matters on a loaded machine
            # (CI shares its two cores with the Go build caches and other suites).
            cluster._wait_ready(p, timeout=START_TIMEOUT)
            cluster.pids["kube-controller-manager"] = processes.spawn(
                kcm_args(
                    tools.kube_controller_manager, p, kcm_kubeconfig, workloads=real is not None
                ),
                logs / "kube-controller-manager.log",
                die_with_parent=die_with_parent,
            ).pid
            cluster._save()
            scheduler_kubeconfig = directory / "kube-scheduler.kubeconfig"
            pki.write_kubeconfig(scheduler_kubeconfig, cluster.server, p.ca.cert, p.scheduler)
            cluster.pids["kube-scheduler"] = processes.spawn(
                controller_args(tools.kube_scheduler, scheduler_kubeconfig),
                logs / "kube-scheduler.log",
                die_with_parent=die_with_parent,
            ).pid
            cluster._save()
            if real is not None:
                cluster._start_real_node(p, *real, die_with_parent=die_with_parent)
            if crds_dir is not None and crds_dir.is_dir():
                cluster.apply_crds(sorted(crds_dir.glob("*.yaml")))
                manifests.apply_chart_admission(cluster.admin_client())  # what the chart enforces
            fake_nodes.wait_up(kubelets, logs, START_TIMEOUT, cluster._node_up)
            if cluster.real_node is not None:
                cluster._wait_real_node_ready(since=0.0)
                addons.start_firewall(
                    cluster.dir / "nodes" / real_node.NAME, cluster._spawner(die_with_parent)
                )
                addons.wait_ready(cluster.real_node)
        except BaseException:
            cluster.stop(remove=False)
            raise
        return cluster

    def _spawner(self, die_with_parent: bool) -> Spawn:
        def spawn(component: str, argv: Sequence[str], env: dict[str, str] | None) -> int:
            pid = processes.spawn(
                argv,
                self.dir / "logs" / f"{component}.log",
                die_with_parent=die_with_parent,
                env=env,
            ).pid
            self.pids[component] = pid
            self._save()
            return pid

        return spawn

    def restart_real_kubelet(self, *, checkpoint_gate: bool, die_with_parent: bool = True) -> None:
        """Restart the real node's kubelet with the ContainerCheckpoint gate on or off, and
        wait until it is Ready again."""
        node = self.real_node
        if node is None:
            raise ConfigError("this dev cluster has no real node")
        since = time.time()
        real_node.restart_kubelet(
            node,
            self.dir,
            self._stop_component,
            self._spawner(die_with_parent),
            checkpoint_gate=checkpoint_gate,
        )
        self._wait_real_node_ready(since=since)

    def _wait_real_node_ready(self, *, since: float) -> None:
        """Until the real node is Ready; then lift its ``not-ready`` taint. The dev cluster
        runs no node lifecycle controller (fake kubelets do not heartbeat, it would evict
        them), so it does that controller's one job for the real node here."""
        node = self.real_node
        if node is None:
            raise ConfigError("this dev cluster has no real node")
        api = self.admin_client()
        try:
            nodes = k8s.CoreV1Api(api)

            def read_node(name: str) -> dict[str, Any]:
                return dict(call(f"read node {name}", nodes.read_node, name))

            real_node.wait_ready(node, read_node, self._check_alive, since=since)
            taints = read_node(node.name).get("spec", {}).get("taints") or []
            kept = [t for t in taints if t.get("key") != "node.kubernetes.io/not-ready"]
            if kept != taints:
                call(
                    f"patch node {node.name}",
                    nodes.patch_node,
                    node.name,
                    {"spec": {"taints": kept or None}},
                    _content_type=MERGE_PATCH,
                )
        finally:
            close(api)

    def _start_real_node(
        self, p: ClusterPki, tools: binaries.NodeTools, ip: str, *, die_with_parent: bool
    ) -> None:
        """containerd and a real kubelet, registered with this control plane."""
        spawn = self._spawner(die_with_parent)
        api = self.admin_client()
        try:
            # The API server's kubelet client may exec, attach and read logs (as on kubeadm).
            access.bind_cluster_role(
                api,
                "kube-apiserver-kubelet-client",
                "system:kubelet-api-admin",
                [access.user("kube-apiserver-kubelet-client")],
            )
        finally:
            close(api)
        self.real_node = node = real_node.claim(self.dir, ip, p.kubelet_ca)
        self.ports += [node.port, *node.addon_ports.values()]
        self._save()
        api = self.admin_client()
        try:
            addons.publish(api, node)  # the kube-dns Service before any pod asks for it
        finally:
            close(api)
        real_node.start(
            node,
            self.dir,
            server=self.server,
            ca=p.ca,
            kubelet_ca=p.kubelet_ca,
            client_ca=p.client_ca_bundle,
            spawn=spawn,
            tools=tools,
        )

    def _check_alive(self) -> None:
        for name, pid in self.pids.items():
            if not processes.alive(pid):
                raise ToolError(f"{name} exited; see {self.dir}/logs/{name}.log")

    def _wait_ready(self, p: ClusterPki, *, timeout: float) -> None:
        session = requests.Session()
        session.trust_env = False  # else $REQUESTS_CA_BUNDLE overrides the verify below
        session.verify = str(p.ca.cert)
        session.cert = (str(p.admin.cert), str(p.admin.key))

        def ready() -> bool:
            for name, pid in self.pids.items():
                if not processes.alive(pid):
                    raise ToolError(
                        f"{name} exited during start-up; see {self.dir}/logs/{name}.log"
                    )
            try:
                return session.get(f"{self.server}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        if not processes.wait_until(ready, timeout, interval=0.1):
            raise ToolError(f"kube-apiserver not ready in {timeout:.0f} s; see {self.dir}/logs")

    def apply_crds(self, files: Sequence[Path]) -> list[str]:
        """Server-side apply every CRD in ``files`` and wait until each is Established."""
        api = self.admin_client()
        try:
            return manifests.apply_crds(api, files)
        finally:
            close(api)

    def _started(self, component: str, pid: int) -> None:
        self.pids[component] = pid
        self._save()

    def _node_up(self, node: FakeNode) -> None:
        self.ports.append(node.port)
        self.nodes.append(node)

    def stop(self, *, remove: bool = False) -> None:
        """Stop every process group (kubelets first, etcd last); idempotent. A real node
        goes first, with everything it put on the machine (see :func:`real_node.stop`)."""
        problems: list[str] = []
        if self.real_node is not None:
            problems = real_node.stop(self.real_node, self.dir, self._stop_component)
        for name in reversed(list(self.pids)):
            if self._ours(self.pids[name]):
                processes.stop_group(self.pids[name])
        self.pids.clear()
        self._save()
        if problems:  # the control plane is down all the same; what is left is named
            raise ToolError("the real node left " + "; ".join(problems))
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_component(self, name: str) -> None:
        pid = self.pids.pop(name, None)
        if pid is not None and self._ours(pid):
            processes.stop_group(pid, grace=10.0)
        self._save()

    def leftovers(self) -> tuple[list[int], list[int]]:
        """(pids still alive, ports still accepting) among this cluster's; both empty when clean."""
        state = read_state(self.dir) if (self.dir / STATE_FILE).exists() else {}
        pids = [p for p in state.get("allPids", []) if self._ours(p) and processes.alive(p)]
        return pids, [port for port in self.ports if processes.port_open(port)]

    def _ours(self, pid: int) -> bool:
        started = processes.start_time(pid)
        return started is not None and self.pid_starts.get(pid, started) == started

    # --- state file ------------------------------------------------------------------------

    def _save(self) -> None:
        path = self.dir / STATE_FILE
        previous = read_state(self.dir) if path.exists() else {}
        all_pids = sorted(set(previous.get("allPids", [])) | set(self.pids.values()))
        for pid in self.pids.values():
            if pid not in self.pid_starts and (started := processes.start_time(pid)) is not None:
                self.pid_starts[pid] = started
        state = {
            "dir": str(self.dir),
            "server": self.server,
            "caFile": str(self.ca_file),
            "caKey": str(self.ca_key),
            "kubeconfig": str(self.kubeconfig),
            "pids": self.pids,
            "allPids": all_pids,
            "pidStarts": {str(k): v for k, v in self.pid_starts.items()},
            "ports": self.ports,
            "nodes": [n.to_json() for n in self.nodes],
            "realNode": self.real_node.to_json() if self.real_node else None,
            "startupSeconds": round(self.startup_seconds, 2),
        }
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, directory: Path) -> DevCluster:
        raw = read_state(directory.resolve())
        return cls(
            dir=Path(raw["dir"]),
            server=raw["server"],
            ca_file=Path(raw["caFile"]),
            ca_key=Path(raw["caKey"]),
            kubeconfig=Path(raw["kubeconfig"]),
            nodes=[FakeNode.from_json(n) for n in raw["nodes"]],
            real_node=RealNode.from_json(raw["realNode"]) if raw.get("realNode") else None,
            pids=dict(raw["pids"]),
            pid_starts={int(k): v for k, v in raw.get("pidStarts", {}).items()},
            ports=list(raw["ports"]),
            startup_seconds=float(raw.get("startupSeconds", 0.0)),
        )


def stop_from_state(directory: Path, *, remove: bool = False) -> DevCluster:
    cluster = DevCluster.load(directory)
    cluster.stop(remove=False)
    pids, ports = cluster.leftovers()
    if pids or ports:
        raise ToolError(f"dev cluster left pids {pids} and ports {ports} behind")
    if cluster.real_node is not None and (left := real_node.leftovers(cluster.real_node)):
        raise ToolError(f"the real node left {', '.join(left)} behind")
    (cluster.dir / STATE_FILE).unlink(missing_ok=True)
    if remove:
        shutil.rmtree(cluster.dir, ignore_errors=True)
    return cluster
