"""One real node beside the dev cluster's fake ones: containerd + runc + CRIU + a real kubelet.

Everything it needs comes from ``make node-tools`` (see :mod:`.binaries`). One real node per
machine: it owns a network bridge, iptables chains and ``/etc/criu``, so a lock file guards it.
Paths are short on purpose: the kubelet and containerd create unix sockets below their
directories, and a socket path may not exceed 107 bytes.

Layout of one node, with ``<id>`` a per-cluster token:

- ``/run/fcp-<id>/``: containerd's state and socket (and the CRIU logs the agent reads);
- ``/var/lib/fcp-<id>/``: the kubelet's root directory; archives land in its ``checkpoints/``;
- ``$TOOLS_DIR/realnode/containerd``: containerd's content store, kept between clusters so the
  locally built images are imported once per machine (a cache, like the binaries).

What the node changes on the machine is in ``host``, its configuration files in ``setup``; this
module, over 400 lines, keeps the node's one life cycle (claim, start, restart, stop, leftovers)
together so that the order of start and of clean-up can be read in one place.

``stop`` removes the pods first (through the CRI, with the kubelet already stopped so nothing is
restarted), then containerd and its shims, every mount below the node's directories, the
bridge, the iptables chains the node added, the kubelet's cgroups and its directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from forensic_checkpoint.errors import ClusterError, ToolError
from forensic_checkpoint_dev.cluster import binaries, pki, processes
from forensic_checkpoint_dev.realnode import addons, host, setup

NAME = "realnode"
LOCK_FILE = Path("/run/forensic-checkpoint-realnode.lock")
READY_TIMEOUT = 90.0


class RealNodeUnavailable(ToolError):
    """This machine cannot run a real node; the message says why, in one line."""


@dataclass
class RealNode:
    """Where the real node listens and writes, and how to take it down again."""

    name: str
    ip: str
    port: int  #: the kubelet's HTTPS port (a free one, so a host kubelet on 10250 is no clash)
    token: str  #: ``<id>`` in the paths above
    serving_ca: Path  #: the CA that signed the kubelet's serving certificate
    containerd_root: Path
    #: containerd's Prometheus port (loopback): its CRI call counters tell how often the
    #: kubelet really asked the runtime for a checkpoint.
    metrics_port: int
    #: iptables chains present before the node started: ``stop`` removes only the others.
    chains_before: list[str] = field(default_factory=list)
    #: ipsets present before (kube-router's firewall adds its own): ``stop`` removes the others.
    ipsets_before: list[str] = field(default_factory=list)
    #: Whether /etc/criu existed before: the agent creates it for its config, ``stop`` removes
    #: it again only then (and only empty).
    criu_dir_before: bool = True
    #: CoreDNS's, kube-proxy's and kube-router's ports (:func:`addons.choose_ports`)
    addon_ports: dict[str, int] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(f"/run/fcp-{self.token}")

    @property
    def kubelet_root(self) -> Path:
        return Path(f"/var/lib/fcp-{self.token}")

    @property
    def checkpoint_dir(self) -> Path:
        return self.kubelet_root / "checkpoints"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def containerd_state(self) -> Path:
        return self.run_dir / "containerd"

    @property
    def criu_log_dir(self) -> Path:
        """Where runc leaves ``criu-dump.log`` (the agent reads it to explain a failed dump)."""
        return self.containerd_state / "io.containerd.runtime.v2.task" / "k8s.io"

    @property
    def url(self) -> str:
        return f"https://{self.ip}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ip": self.ip,
            "port": self.port,
            "token": self.token,
            "servingCA": str(self.serving_ca),
            "containerdRoot": str(self.containerd_root),
            "metricsPort": self.metrics_port,
            "chainsBefore": self.chains_before,
            "ipsetsBefore": self.ipsets_before,
            "criuDirBefore": self.criu_dir_before,
            "addonPorts": self.addon_ports,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RealNode:
        return cls(
            name=raw["name"],
            ip=raw["ip"],
            port=int(raw["port"]),
            token=raw["token"],
            serving_ca=Path(raw["servingCA"]),
            containerd_root=Path(raw["containerdRoot"]),
            metrics_port=int(raw["metricsPort"]),
            chains_before=list(raw.get("chainsBefore", [])),
            ipsets_before=list(raw.get("ipsetsBefore", [])),
            criu_dir_before=bool(raw.get("criuDirBefore", True)),
            addon_ports=dict(raw.get("addonPorts", {})),
        )

    # --- CRI access, for tests and clean-up --------------------------------------------------

    def crictl(self, *args: str, timeout: float = 60.0) -> str:
        tools = binaries.node_tools()
        result = subprocess.run(
            [str(tools.crictl), f"--runtime-endpoint=unix://{self.containerd_socket}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"crictl {' '.join(args)}: {result.stderr.strip()[-500:]}")
        return result.stdout

    def runtime_calls(self, method: str = "CheckpointContainer") -> int:
        """How many ``method`` calls containerd's CRI server has received (its gRPC metrics):
        the kubelet's checkpoint requests that reached the runtime."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/v1/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("grpc_server_started_total{") and f'grpc_method="{method}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)


# --- can this machine run one? -------------------------------------------------------------


def node_ip() -> str | None:
    """The first global IPv4 address: a real kubelet refuses a loopback node IP."""
    try:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    return None


def preflight() -> tuple[binaries.NodeTools, str]:
    """The node tools and the node IP, or :class:`RealNodeUnavailable` saying why not."""
    if os.geteuid() != 0:
        raise RealNodeUnavailable("a real node needs root (containerd, mounts, a bridge, iptables)")
    try:
        tools = binaries.node_tools()
    except ToolError as exc:
        raise RealNodeUnavailable(str(exc)) from exc
    for tool in ("runc", "iptables", "ip"):
        if shutil.which(tool) is None:
            raise RealNodeUnavailable(f"{tool} is not installed; run `make node-tools`")
    _wait_for_the_node()
    ip = node_ip()
    if ip is None:
        raise RealNodeUnavailable(
            "no global IPv4 address: a real kubelet refuses a loopback node IP"
        )
    check = subprocess.run(
        [str(tools.criu), "check"], capture_output=True, text=True, timeout=60, check=False
    )
    if check.returncode != 0:
        last = (check.stderr or check.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RealNodeUnavailable(f"`criu check` fails on this kernel: {last[0]}")
    return tools, ip


#: Seconds to wait for another cluster's real node to go down before giving up (0: fail at
#: once, the default): a developer machine may run a CI pass beside other real-node work.
WAIT_ENV = "FORENSIC_REAL_NODE_WAIT"


def _holder() -> str | None:
    """The cluster directory of a live claim on the machine's real node, if any."""
    with contextlib.suppress(OSError):
        holder = LOCK_FILE.read_text().strip()
        if holder and _claim_alive(Path(holder)):
            return holder
    return None


def _wait_for_the_node() -> None:
    deadline = time.monotonic() + float(os.environ.get(WAIT_ENV) or 0)
    while (holder := _holder()) is not None:
        if time.monotonic() >= deadline:
            raise RealNodeUnavailable(_taken(holder))
        time.sleep(5)


def _lock(owner: Path) -> None:
    """Claim the machine's one real node for the cluster in ``owner``.

    The claim outlives ``cluster up`` (whose process exits), so it is the lock file's
    content, not a held lock: a claim stands while its cluster's containerd runs. ``flock``
    only makes the check-and-claim atomic between two starts."""
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        holder = os.read(fd, 4096).decode(errors="replace").strip()
        if holder and holder != str(owner) and _claim_alive(Path(holder)):
            raise RealNodeUnavailable(_taken(holder))
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(owner).encode(), 0)
    finally:
        os.close(fd)  # drops the flock


def _taken(holder: str) -> str:
    return (
        f"a real node already runs on this machine (cluster {holder}); "
        f"`forensic-checkpoint-dev cluster down` it, or set {WAIT_ENV}=SECONDS to wait for it"
    )


def _claim_alive(cluster_dir: Path) -> bool:
    try:
        state = json.loads((cluster_dir / "state.json").read_text())
    except (OSError, ValueError):
        return False
    pid = (state.get("pids") or {}).get("containerd")
    return isinstance(pid, int) and processes.alive(pid)


def _unlock(owner: Path) -> None:
    with contextlib.suppress(OSError):
        if LOCK_FILE.read_text().strip() == str(owner):
            LOCK_FILE.unlink()


# --- start ---------------------------------------------------------------------------------


Spawn = Callable[[str, Sequence[str], dict[str, str] | None], int]


def claim(cluster_dir: Path, ip: str, kubelet_ca: pki.CertPair) -> RealNode:
    """Claim the machine's real node for this cluster and choose its ports and paths. The
    caller records the result before :func:`start`, so that a start that fails half-way is
    taken down by :func:`stop` like a running node."""
    _lock(cluster_dir)
    return RealNode(
        name=NAME,
        ip=ip,
        port=processes.free_port(),
        token=secrets.token_hex(4),
        serving_ca=kubelet_ca.cert,
        containerd_root=binaries.tools_dir() / "realnode" / "containerd",
        metrics_port=processes.free_port(),
        chains_before=host.chains(),
        ipsets_before=host.ipsets(),
        criu_dir_before=host.CRIU_CONFIG.parent.exists(),
        addon_ports=addons.choose_ports(),
    )


def start(
    node: RealNode,
    cluster_dir: Path,
    *,
    server: str,
    ca: pki.CertPair,
    kubelet_ca: pki.CertPair,
    client_ca: Path,
    spawn: Spawn,
    tools: binaries.NodeTools,
) -> None:
    """Start containerd and the kubelet; returns once they run (the node is not yet Ready).

    ``client_ca`` is the kubelet's client CA bundle: the cluster CA and forensic-checkpoint's
    kubelet client CA, as docs/install.md tells an installation in ``kubelet.authMode: csr``.

    ``spawn(component, argv, env)`` starts a process the cluster tracks and returns its pid.
    """
    ip = node.ip
    base = cluster_dir / "nodes" / NAME
    etc = base / "etc"
    for d in (etc, node.run_dir, node.kubelet_root, node.containerd_root):
        d.mkdir(parents=True, exist_ok=True)
    client = pki.issue(
        ca,
        pki.CertPair(base / "client.crt", base / "client.key"),
        f"system:node:{NAME}",
        organizations=("system:nodes",),
        client=True,
    )
    serving = pki.issue(
        kubelet_ca,
        pki.CertPair(base / "serving.crt", base / "serving.key"),
        NAME,
        server_names=(ip, "127.0.0.1", "localhost", NAME),
    )
    kubeconfig = base / "kubeconfig"
    pki.write_kubeconfig(kubeconfig, server, ca.cert, client)
    (etc / "containerd.toml").write_text(setup.containerd_config(node, tools, etc))
    cni_dir = etc / "cni"
    cni_dir.mkdir(exist_ok=True)
    _write_json(cni_dir / "10-fcp.conflist", setup.cni_config(node))
    _write_json(etc / "kubelet-config.json", setup.kubelet_config(node, client_ca, serving))

    env = {
        # containerd finds its shim on PATH; runc and iptables come from the system.
        "PATH": f"{tools.containerd.parent}:{tools.cni_bin_dir}:/usr/local/sbin:/usr/local/bin:"
        "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
    }
    spawn(
        "containerd",
        [str(tools.containerd), "--config", str(etc / "containerd.toml"), "--log-level", "warn"],
        env,
    )
    _wait(node.containerd_socket.exists, 30, "containerd did not create its socket")
    setup.import_images(node, tools)
    kubelet_argv = [
        str(tools.kubelet),
        f"--config={etc / 'kubelet-config.json'}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={node.kubelet_root}",
        f"--cert-dir={base / 'pki'}",
        f"--hostname-override={NAME}",
        f"--node-ip={ip}",
        "--v=2",
    ]
    _write_json(etc / "kubelet-launch.json", {"argv": kubelet_argv, "env": env})
    spawn(f"kubelet-{NAME}", kubelet_argv, env)
    addons.start(node, base, server=server, ca=ca, spawn=spawn, tools=tools, env=env)


def restart_kubelet(
    node: RealNode,
    cluster_dir: Path,
    stop_component: Callable[[str], None],
    spawn: Spawn,
    *,
    checkpoint_gate: bool,
) -> None:
    """Restart the kubelet with the ContainerCheckpoint gate on or off (pods keep running)."""
    etc = cluster_dir / "nodes" / node.name / "etc"
    config = json.loads((etc / "kubelet-config.json").read_text())
    config["featureGates"]["ContainerCheckpoint"] = checkpoint_gate
    _write_json(etc / "kubelet-config.json", config)
    launch = json.loads((etc / "kubelet-launch.json").read_text())
    stop_component(f"kubelet-{node.name}")
    spawn(f"kubelet-{node.name}", launch["argv"], launch["env"])


def wait_ready(
    node: RealNode,
    read_node: Callable[[str], dict[str, Any]],
    alive: Callable[[], None],
    *,
    since: float = 0.0,
) -> None:
    """Until the Node reports Ready (its CNI and runtime are up) with a heartbeat after
    ``since`` (epoch seconds); ``alive`` raises when a component died."""

    def ready() -> bool:
        alive()
        try:
            obj = read_node(node.name)
        except ClusterError:
            return False
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") == "True":
                beat = datetime.fromisoformat(c["lastHeartbeatTime"].replace("Z", "+00:00"))
                return beat.timestamp() >= int(since)
        return False

    _wait(ready, READY_TIMEOUT, f"node {node.name} not Ready within {READY_TIMEOUT:.0f} s")


def _wait(check: Callable[[], bool], timeout: float, message: str) -> None:
    if not processes.wait_until(check, timeout, interval=0.2):
        raise ToolError(message)


def _write_json(path: Path, data: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)


# --- stop ----------------------------------------------------------------------------------


def stop(node: RealNode, cluster_dir: Path, stop_component: Callable[[str], None]) -> list[str]:
    """Take the node down and remove what it left; returns what could not be removed."""
    problems: list[str] = []
    for addon in addons.COMPONENTS:
        stop_component(addon)
    stop_component(f"kubelet-{node.name}")
    if node.containerd_socket.exists():
        try:
            _remove_pods(node)
        except (ClusterError, subprocess.TimeoutExpired, OSError) as exc:
            problems.append(f"pods: {exc}")
    stop_component("containerd")
    _kill_shims(node)
    problems += host.unmount_below((node.run_dir, node.kubelet_root))
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        if Path(f"/sys/class/net/{host.BRIDGE}").exists():
            subprocess.run(["ip", "link", "delete", host.BRIDGE], check=True, capture_output=True)
    problems += host.remove_chains(node.chains_before)
    problems += host.remove_ipsets(node.ipsets_before)  # after the rules that name them
    host.remove_criu_config(keep_dir=node.criu_dir_before)
    host.remove_cgroups()
    for d in (node.run_dir, node.kubelet_root):
        shutil.rmtree(d, ignore_errors=True)
        if d.exists():
            problems.append(f"{d} could not be removed")
    _unlock(cluster_dir)
    return problems


def leftovers(node: RealNode) -> list[str]:
    """What of the node is still on the machine (empty when `down` was clean)."""
    left = [f"mount {m}" for m in host.mounts_below((node.run_dir, node.kubelet_root))]
    left += [str(d) for d in (node.run_dir, node.kubelet_root) if d.exists()]
    if Path(f"/sys/class/net/{host.BRIDGE}").exists():
        left.append(f"bridge {host.BRIDGE}")
    left += [f"iptables chain {c}" for c in host.chains() if c not in node.chains_before]
    left += [f"ipset {s}" for s in host.ipsets() if s not in node.ipsets_before]
    if host.written_by_agent(host.CRIU_CONFIG):
        left.append(str(host.CRIU_CONFIG))
    if not node.criu_dir_before and host.CRIU_CONFIG.parent.exists():
        left.append(str(host.CRIU_CONFIG.parent))
    left += [f"shim pid {pid}" for pid in _shim_pids(node)]
    return left


def _remove_pods(node: RealNode) -> None:
    pods = node.crictl("pods", "-q").split()
    for pod in pods:
        with contextlib.suppress(ClusterError):
            node.crictl("stopp", pod)
        with contextlib.suppress(ClusterError):
            node.crictl("rmp", "-f", pod)


def _shim_pids(node: RealNode) -> list[int]:
    """containerd's shims daemonise out of its process group; they name our socket."""
    found = []
    needle = str(node.containerd_socket).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if b"containerd-shim" in cmdline and needle in cmdline:
                found.append(int(proc.name))
    return found


def _kill_shims(node: RealNode) -> None:
    for pid in _shim_pids(node):
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    processes.wait_until(lambda: not _shim_pids(node), 10)
