"""Helpers for the real-node tests: kubectl against the dev cluster, workloads on the node,
the node's agent started with either kubelet credential, and what the runtime really did."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev.cluster import access, binaries, processes
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.realnode import node as real_node
from forensic_checkpoint_dev.realnode.node import RealNode
from forensic_checkpoint_dev.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "e2e"
NAMESPACE = "default"
#: Secret of the blog scenario (e2e/assert-blog.sh searches for it).
SECRET = "RANDOM_4105_KEY"
BUSYBOX = "docker.io/library/busybox:local"
PYTHON = "python:3.12-slim-bookworm"


@dataclass
class RealNodeEnv:
    cluster: DevCluster
    stack: LocalStack
    root: Path

    @property
    def node(self) -> RealNode:
        assert self.cluster.real_node is not None
        return self.cluster.real_node

    # --- kubectl --------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> str:
        result = subprocess.run(
            [str(binaries.locate("kubectl")), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def run_script(self, script: str, *args: str) -> str:
        """An e2e/ script as CI runs it, with this cluster's kubectl and kubeconfig."""
        env = {
            **os.environ,
            "KUBECTL": str(binaries.locate("kubectl")),
            "KUBECONFIG": str(self.cluster.kubeconfig),
        }
        result = subprocess.run(
            ["bash", str(E2E / script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"{script}: {result.stdout}\n{result.stderr}"
        return result.stdout

    def apply(self, manifest: dict[str, Any] | str, namespace: str = NAMESPACE) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        self.kubectl("-n", namespace, "apply", "-f", "-", input=text)

    def ensure_namespace(self, name: str) -> None:
        api = self.cluster.admin_client()
        try:
            access.ensure_namespace(api, name)
        finally:
            close(api)

    def pod(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("-n", namespace, "get", "pod", name, "-o", "json")))

    def wait_pod_ready(self, name: str, namespace: str = NAMESPACE, timeout: int = 120) -> None:
        wait = ("wait", "--for=condition=Ready", f"pod/{name}", f"--timeout={timeout}s")
        self.kubectl("-n", namespace, *wait, timeout=timeout + 10)

    def delete_pod(self, name: str, namespace: str = NAMESPACE) -> None:
        self.kubectl(
            "-n", namespace, "delete", "pod", name, "--ignore-not-found", "--grace-period=0",
            "--force", "--wait=true", timeout=120,
        )  # fmt: skip

    # --- workloads ------------------------------------------------------------------------

    def start_counter(self, secret: str = SECRET) -> dict[str, Any]:
        """The blog's counter pod from e2e/ unchanged (scheduled onto the real node), holding
        ``secret`` in its Python heap."""
        self.kubectl("-n", NAMESPACE, "delete", "configmap", "counter", "--ignore-not-found")
        self.kubectl(
            "-n", NAMESPACE, "create", "configmap", "counter", f"--from-file={E2E / 'counter.py'}"
        )
        self.kubectl("-n", NAMESPACE, "apply", "-f", str(E2E / "counter.yaml"))
        self.wait_pod_ready("counters")
        self.kubectl(
            "-n", NAMESPACE, "exec", "counters", "-c", "counter", "--", "python3", "-c",
            "import urllib.request, sys; "
            "print(urllib.request.urlopen('http://127.0.0.1:8088/secret?' + sys.argv[1]).read())",
            secret,
        )  # fmt: skip
        return self.pod("counters")

    def busybox_pod(
        self, name: str, script: str, *, restart: str = "Always", ready: bool = True
    ) -> None:
        """A busybox pod on the real node running ``script`` under ``sh -c``."""
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "restartPolicy": restart,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "app",
                            "image": BUSYBOX,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", script],
                        }
                    ],
                },
            }
        )
        if ready:
            self.wait_pod_ready(name)

    def memory_hog(self, name: str, gib: int) -> None:
        """A pod holding ``gib`` GiB of non-zero pages (zero pages are not dumped), then idle:
        a capture whose dump takes seconds."""
        hog = (
            f"b = bytes(range(256)) * ({gib} << 22)\n"
            "import sys, time\n"
            "print('ready', flush=True)\n"
            "time.sleep(1e9)\n"
        )
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "app",
                            "image": PYTHON,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-c", hog],
                        }
                    ],
                },
            }
        )
        self.wait_pod_ready(name)
        wait_for(
            lambda: "ready" in self.kubectl("-n", NAMESPACE, "logs", name),
            120,
            f"the {gib} GiB container never filled its memory",
        )

    # --- agents ---------------------------------------------------------------------------

    def start_agent(
        self,
        *,
        cert: bool = False,
        values: dict[str, Any] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """(Re)start the node's agent with the ServiceAccount token (default) or a client
        certificate allowed ``create nodes/checkpoint`` as its kubelet credential."""
        if self.node.name in self.stack.agents:
            self.stack.stop_agent(self.node.name)
        values_file = None
        if values is not None:
            values_file = self.root / "agent-values.yaml"
            values_file.write_text(yaml.safe_dump(values))
        credentials: dict[str, Any] = {}
        if cert:
            user = "forensic-checkpoint-agent-kubelet-client"
            pair = self.cluster.issue_client_certificate(user)
            api = self.cluster.admin_client()
            try:
                access.grant_node_checkpoint(api, "real-node-agent-cert", [access.user(user)])
            finally:
                close(api)
            credentials = {"kubelet_client_cert": pair}
        self.stack.start_agent(
            self.node.name,
            values_file=values_file,
            host_root=values is not None,
            extra_args=extra_args,
            **credentials,
        )

    # --- captures -------------------------------------------------------------------------

    def capture(self, name: str, spec: dict[str, Any], *, timeout: float = 180.0) -> dict[str, Any]:
        with _deleted_first(self, name):
            self.stack.create_checkpoint(NAMESPACE, name, spec)
        return self.stack.wait_phase(NAMESPACE, name, timeout=timeout)

    def checkpoints_on_node(self) -> list[Path]:
        return sorted(self.node.checkpoint_dir.glob("*.tar"))


class _deleted_first:
    """Delete a leftover ForensicCheckpoint of the same name (and wait until it is gone)."""

    def __init__(self, env: RealNodeEnv, name: str) -> None:
        self.env, self.name = env, name

    def __enter__(self) -> None:
        if self.env.stack.get_checkpoint(NAMESPACE, self.name) is not None:
            self.env.stack.delete_checkpoint(NAMESPACE, self.name)
            processes.wait_until(
                lambda: self.env.stack.get_checkpoint(NAMESPACE, self.name) is None, 60
            )

    def __exit__(self, *exc: object) -> None:
        return None


@contextlib.contextmanager
def real_node_env(root: Path) -> Iterator[RealNodeEnv]:
    """The dev cluster with the real node, the operator and the node's agent as local
    processes; everything is stopped, and the node left clean, on the way out."""
    cluster = DevCluster.start(root / "cluster", nodes=0, with_real_node=True, die_with_parent=True)
    stack: LocalStack | None = None
    try:
        stack = LocalStack.prepare(cluster, root / "stack")
        env = RealNodeEnv(cluster, stack, root)
        env.ensure_namespace(NAMESPACE)
        stack.start_operator([NAMESPACE])
        env.start_agent()
        yield env
    finally:
        if stack is not None:
            stack.stop()
        node = cluster.real_node
        cluster.stop()
        # `down` must leave no mount, bridge, iptables chain, shim, directory or /etc/criu file.
        assert node is not None
        assert real_node.leftovers(node) == []


def wait_for(check: Any, timeout: float, message: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(interval)
