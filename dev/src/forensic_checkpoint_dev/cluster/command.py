"""`forensic-checkpoint-dev cluster up|down|env`: a local API server with fake kubelet nodes."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

HELP = (
    "Run a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) "
    "with fake kubelet nodes that answer the checkpoint API. `up` prints `export KUBECONFIG=...`."
)
DEFAULT_DIR = Path(".dev-cluster")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "env"])
    parser.add_argument("--nodes", type=int, default=2, help="fake kubelet nodes (default 2)")
    parser.add_argument(
        "--real-node",
        action="store_true",
        help="also run one real node (containerd, runc, CRIU and a kubelet, from "
        "`make node-tools`); needs root and a kernel where `criu check` passes",
    )
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="cluster directory (default .dev-cluster)"
    )
    parser.add_argument(
        "--runtime-version",
        default=None,
        help="node status containerRuntimeVersion (default containerd://2.3.4)",
    )
    parser.add_argument(
        "--no-build", action="store_true", help="fail instead of building missing binaries"
    )
    parser.add_argument(
        "--bare",
        action="store_true",
        help="up: without our CRDs and the chart's admission policies, as kubeadm leaves a "
        "cluster, for `helm install` of the chart (e2e/real-cluster.sh)",
    )
    parser.add_argument("--keep-dir", action="store_true", help="down: keep logs and certificates")


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint.errors import ConfigError
    from forensic_checkpoint_dev.cluster.control_plane import DevCluster, stop_from_state

    if args.action == "up":
        if args.nodes < 0:
            raise ConfigError("--nodes must be 0 or more")
        extra: dict[str, Any] = {"crds_dir": None} if args.bare else {}
        if args.runtime_version:
            extra["runtime_version"] = args.runtime_version
        cluster = DevCluster.start(
            args.dir,
            nodes=args.nodes,
            build=not args.no_build,
            with_real_node=args.real_node,
            **extra,
        )
        print(
            f"dev cluster up in {cluster.startup_seconds:.1f} s: {cluster.server}", file=sys.stderr
        )
        for node in cluster.nodes:
            print(
                f"  {node.name}: kubelet {node.url} checkpoints in {node.checkpoint_dir}",
                file=sys.stderr,
            )
        if (real := cluster.real_node) is not None:
            print(
                f"  {real.name} (real): kubelet {real.url} checkpoints in {real.checkpoint_dir}",
                file=sys.stderr,
            )
        _print_env(cluster.kubeconfig)
        return 0
    if args.action == "down":
        stop_from_state(args.dir, remove=not args.keep_dir)
        print(f"dev cluster in {args.dir} stopped; no process or port left", file=sys.stderr)
        return 0
    _print_env(DevCluster.load(args.dir).kubeconfig)
    return 0


def _print_env(kubeconfig: Path) -> None:
    print(f"export KUBECONFIG={shlex.quote(str(kubeconfig))}")
