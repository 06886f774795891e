"""Finding (and if need be building) etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kubectl, and the real node's tools (containerd, kubelet, CRIU, images).

Resolution per cluster tool: an environment variable naming a binary (``FORENSIC_ETCD``,
``FORENSIC_KUBE_APISERVER``, ``FORENSIC_KUBE_CONTROLLER_MANAGER``, ``FORENSIC_KUBE_SCHEDULER``,
``FORENSIC_KUBECTL``, ``FORENSIC_HELM``, ``FORENSIC_PROMTOOL``, ``FORENSIC_KUBECONFORM``) wins;
otherwise the per-machine cache that ``make cluster-tools`` (``make check-tools`` for promtool
and kubeconform) fills (``$FORENSIC_TOOLS_DIR``, default ``~/.cache/forensic-checkpoint``),
at the versions pinned in ``tools/versions.env``.

The real node's tools come only from the cache ``make node-tools`` fills
(``scripts/build-node-tools.sh``, whose header documents the layout); see :func:`node_tools`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from forensic_checkpoint.errors import ToolError
from forensic_checkpoint_dev.repo import REPO_ROOT

VERSIONS_FILE = REPO_ROOT / "tools" / "versions.env"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-cluster-tools.sh"
NODE_BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-node-tools.sh"

#: tool -> (environment override, versions.env key, cache sub-directory prefix)
_TOOLS = {
    "etcd": ("FORENSIC_ETCD", "ETCD_VERSION", "etcd"),
    "kube-apiserver": ("FORENSIC_KUBE_APISERVER", "KUBERNETES_VERSION", "kubernetes"),
    "kube-controller-manager": (
        "FORENSIC_KUBE_CONTROLLER_MANAGER",
        "KUBERNETES_VERSION",
        "kubernetes",
    ),
    "kube-scheduler": ("FORENSIC_KUBE_SCHEDULER", "KUBERNETES_VERSION", "kubernetes"),
    "kubectl": ("FORENSIC_KUBECTL", "KUBERNETES_VERSION", "kubernetes"),
    "helm": ("FORENSIC_HELM", "HELM_VERSION", "helm"),
    # Chart checks only (scripts/build-check-tools.sh, `make check-tools`).
    "promtool": ("FORENSIC_PROMTOOL", "PROMETHEUS_VERSION", "promtool"),
    "kubeconform": ("FORENSIC_KUBECONFORM", "KUBECONFORM_VERSION", "kubeconform"),
}
CLUSTER_TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

#: The symlink ``make node-tools`` points at the images of the current recipe
#: (``node-images-<hash of the recipe>``) after a successful build.
NODE_IMAGES_LINK = "node-images-current"
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
#: Debian's runc, which the CRIU wrapper ``criu-<v>/runc`` execs.
SYSTEM_RUNC = Path("/usr/bin/runc")
#: kube-router's firewall keeps its address sets with Debian's ipset.
SYSTEM_IPSET = Path("/usr/sbin/ipset")


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path


@dataclass(frozen=True)
class NodeTools:
    """A real node's binaries and image archives, as ``make node-tools`` caches them."""

    containerd: Path
    containerd_shim: Path  #: containerd-shim-runc-v2, next to containerd (found on its PATH)
    ctr: Path
    crictl: Path
    kubelet: Path
    kube_proxy: Path
    coredns: Path  #: the cluster DNS (tools/coredns)
    kube_router: Path  #: the NetworkPolicy enforcer, its firewall only (tools/kube-router)
    cni_bin_dir: Path  #: bridge, host-local, loopback, portmap
    criu: Path
    #: ``exec /usr/bin/runc --criu <criu> "$@"``: containerd's runc ``BinaryName``
    runc_wrapper: Path
    #: "pause", "busybox", "python" -> OCI archive for ``ctr -n k8s.io images import``
    images: dict[str, Path]
    #: the same keys -> the image reference each archive is imported as
    image_names: dict[str, str]


def tools_dir() -> Path:
    return Path(
        os.environ.get("FORENSIC_TOOLS_DIR", Path.home() / ".cache" / "forensic-checkpoint")
    )


def pinned_versions() -> dict[str, str]:
    try:
        text = VERSIONS_FILE.read_text()
    except OSError as exc:
        raise ToolError(f"cannot read pinned tool versions {VERSIONS_FILE}: {exc}") from exc
    versions = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            versions[key.strip()] = value.strip()
    return versions


def locate(tool: str) -> Path:
    """The path the tool is expected at (it may not exist yet)."""
    env, version_key, prefix = _TOOLS[tool]
    override = os.environ.get(env)
    if override:
        return Path(override)
    version = pinned_versions()[version_key]
    return tools_dir() / f"{prefix}-{version}" / tool


def missing() -> list[str]:
    return [t for t in CLUSTER_TOOLS if not os.access(locate(t), os.X_OK)]


def go_available() -> bool:
    return shutil.which("go") is not None


def _run_build(script: Path) -> None:
    """Run one of the build scripts into this cache; a failure is a ToolError."""
    env = {**os.environ, "TOOLS_DIR": str(tools_dir())}
    result = subprocess.run(["bash", str(script)], env=env, check=False)
    if result.returncode != 0:
        raise ToolError(f"{script.name} failed with exit code {result.returncode}")


def ensure(*, build: bool = True) -> Binaries:
    """The cluster binaries, built first (minutes, once per machine) when missing and allowed."""
    absent = missing()
    if absent and build:
        if not go_available():
            raise ToolError(f"missing {', '.join(absent)} and no Go toolchain to build them")
        _run_build(BUILD_SCRIPT)
        absent = missing()
    if absent:
        hint = "run `make cluster-tools` or set " + ", ".join(_TOOLS[t][0] for t in absent)
        raise ToolError(f"missing cluster tools {', '.join(absent)}: {hint}")
    return Binaries(
        etcd=locate("etcd"),
        kube_apiserver=locate("kube-apiserver"),
        kube_controller_manager=locate("kube-controller-manager"),
        kube_scheduler=locate("kube-scheduler"),
    )


def image_names() -> dict[str, str]:
    """The references the node images are tagged with. "python" is the name e2e/counter.yaml
    uses; the image is Debian bookworm's python 3.11 (no registry is reachable to pull 3.12)."""
    return {
        "pause": f"registry.k8s.io/pause:{pinned_versions()['PAUSE_IMAGE_VERSION']}",
        "busybox": "docker.io/library/busybox:local",
        "python": "docker.io/library/python:3.12-slim-bookworm",
    }


def locate_node_tools() -> NodeTools:
    """Where the node tools are expected (they may not exist yet)."""
    v = pinned_versions()
    root = tools_dir()
    containerd = root / f"containerd-{v['CONTAINERD_VERSION']}"
    kubelet = root / f"kubelet-{v['KUBERNETES_VERSION']}"
    criu = root / f"criu-{v['CRIU_VERSION']}"
    images = root / NODE_IMAGES_LINK
    names = image_names()
    return NodeTools(
        containerd=containerd / "containerd",
        containerd_shim=containerd / "containerd-shim-runc-v2",
        ctr=containerd / "ctr",
        crictl=root / f"crictl-{v['CRICTL_VERSION']}" / "crictl",
        kubelet=kubelet / "kubelet",
        kube_proxy=kubelet / "kube-proxy",
        coredns=root / f"coredns-{v['COREDNS_VERSION']}" / "coredns",
        kube_router=root / f"kube-router-{v['KUBE_ROUTER_VERSION']}" / "kube-router",
        cni_bin_dir=root / f"cni-plugins-{v['CNI_PLUGINS_VERSION']}",
        criu=criu / "criu",
        runc_wrapper=criu / "runc",
        # Resolved, so a later rebuild (a new recipe, a new link) does not move them under us.
        images={key: images.resolve() / f"{key}.tar" for key in names},
        image_names=names,
    )


def missing_node_tools() -> list[str]:
    """The node tools that are not in the cache (empty when ``make node-tools`` has run)."""
    tools = locate_node_tools()
    executables = {
        "containerd": tools.containerd,
        "containerd-shim-runc-v2": tools.containerd_shim,
        "ctr": tools.ctr,
        "crictl": tools.crictl,
        "kubelet": tools.kubelet,
        "kube-proxy": tools.kube_proxy,
        "coredns": tools.coredns,
        "kube-router": tools.kube_router,
        **{f"cni/{p}": tools.cni_bin_dir / p for p in CNI_PLUGINS},
        "criu": tools.criu,
        "runc wrapper": tools.runc_wrapper,
        "runc (Debian package)": SYSTEM_RUNC,
        "ipset (Debian package)": SYSTEM_IPSET,
    }
    absent = [name for name, path in executables.items() if not os.access(path, os.X_OK)]
    absent += [f"{key} image" for key, path in tools.images.items() if not path.is_file()]
    return absent


def node_tools(*, build: bool = False) -> NodeTools:
    """The real node's tools; with ``build``, ``scripts/build-node-tools.sh`` runs first when
    some are missing (root, minutes once per machine)."""
    absent = missing_node_tools()
    if absent and build:
        if not go_available():
            raise ToolError(f"missing node tools {', '.join(absent)} and no Go toolchain")
        _run_build(NODE_BUILD_SCRIPT)
        absent = missing_node_tools()
    if absent:
        named = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
        hint = "run `make node-tools` (as root)"
        raise ToolError(f"missing node tools {named} in {tools_dir()}: {hint}")
    return locate_node_tools()
