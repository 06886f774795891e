"""Finding (and if need be building) etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kubectl.

Resolution per tool: an environment variable naming a binary (``FORENSIC_ETCD``,
``FORENSIC_KUBE_APISERVER``, ``FORENSIC_KUBE_CONTROLLER_MANAGER``, ``FORENSIC_KUBE_SCHEDULER``,
``FORENSIC_KUBECTL``, ``FORENSIC_HELM``) wins; otherwise the per-machine cache that
``make cluster-tools`` fills (``$FORENSIC_TOOLS_DIR``, default ``~/.cache/forensic-checkpoint``),
at the versions pinned in ``tools/versions.env``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from forensic_checkpoint.errors import ToolError

#: The repository checkout this package runs from (the package is installed in editable mode).
REPO_ROOT = Path(__file__).resolve().parents[4]
VERSIONS_FILE = REPO_ROOT / "tools" / "versions.env"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-cluster-tools.sh"

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
}
CLUSTER_TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path


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


def ensure(*, build: bool = True) -> Binaries:
    """The cluster binaries, built first (minutes, once per machine) when missing and allowed."""
    absent = missing()
    if absent and build:
        if not go_available():
            raise ToolError(f"missing {', '.join(absent)} and no Go toolchain to build them")
        env = {**os.environ, "TOOLS_DIR": str(tools_dir())}
        result = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, check=False)
        if result.returncode != 0:
            raise ToolError(f"{BUILD_SCRIPT.name} failed with exit code {result.returncode}")
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
