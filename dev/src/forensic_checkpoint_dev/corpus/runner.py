"""Run corpus scenarios on the real node and keep each capture with its ground truth.

A scenario's pod runs on the real node; once it is ready (its ``ready`` command, its host
clients connected, every expectation's process present), the container's /proc is read, a
ForensicCheckpoint captures it (operator -> agent -> the kubelet's checkpoint API -> containerd,
runc, CRIU), and the archive the agent hashed is copied into the cache with ``<name>.truth.json``
next to it. The ForensicCheckpoint is then deleted (the agent removes its archive from the node)
and so is the pod.

Cache: ``$FORENSIC_TOOLS_DIR/corpus/<name>-<definition hash>/``; the hash covers the scenario's
definition, the corpus image and the CRIU version, so a cached scenario is not captured again.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forensic_checkpoint.errors import ToolError
from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev.cluster import access, binaries, processes
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.corpus import hostnet, procfs, truth
from forensic_checkpoint_dev.corpus.model import Scenario, definition_hash
from forensic_checkpoint_dev.corpus.scenarios import NAMESPACE
from forensic_checkpoint_dev.realnode import setup
from forensic_checkpoint_dev.realnode.host import POD_SUBNET
from forensic_checkpoint_dev.realnode.node import RealNode
from forensic_checkpoint_dev.repo import REPO_ROOT
from forensic_checkpoint_dev.stack import LocalStack

IMAGES_LINK = "corpus-images-current"
IMAGE_SCRIPT = REPO_ROOT / "scripts" / "build-corpus-images.sh"
READY_TIMEOUT = 120.0
CAPTURE_TIMEOUT = 300.0


@dataclass(frozen=True)
class CorpusImage:
    tar: Path
    name: str


def corpus_image() -> CorpusImage:
    """The image ``make corpus-images`` built for the current recipe."""
    key = subprocess.run(
        ["bash", str(IMAGE_SCRIPT), "--print-key"], capture_output=True, text=True, check=True
    ).stdout.strip()
    directory = binaries.tools_dir() / f"corpus-images-{key}"
    tar = directory / "corpus.tar"
    if not tar.is_file():
        raise ToolError(f"no corpus image {tar}: run `make corpus-images` (root)")
    return CorpusImage(tar, (directory / "NAME").read_text().strip())


def cache_root() -> Path:
    return binaries.tools_dir() / "corpus"


def scenario_hash(scenario: Scenario, image: str) -> str:
    criu = binaries.pinned_versions().get("CRIU_VERSION", "")
    patches = sorted((REPO_ROOT / "tools" / "node" / "criu-patches").glob("*.patch"))
    patch_key = hashlib.sha256(b"".join(p.read_bytes() for p in patches)).hexdigest()[:12]
    return definition_hash(scenario, image, f"criu {criu} {patch_key}", truth.TRUTH_VERSION)


def cached(scenario: Scenario, image: str, root: Path | None = None) -> Path:
    """The scenario's cache directory (it holds the files only once captured)."""
    return (root or cache_root()) / f"{scenario.name}-{scenario_hash(scenario, image)}"


def is_cached(directory: Path, name: str) -> bool:
    return (directory / f"{name}.tar").is_file() and (directory / f"{name}.truth.json").is_file()


def gateway() -> str:
    """The host's address as the pods see it: the CNI bridge's gateway."""
    return str(next(ipaddress.ip_network(POD_SUBNET).hosts()))


@dataclass
class CorpusRun:
    """Captures scenarios on a running dev cluster with a real node, operator and agent."""

    cluster: DevCluster
    stack: LocalStack
    image: CorpusImage
    namespace: str = NAMESPACE
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def node(self) -> RealNode:
        if self.cluster.real_node is None:
            raise ToolError("the corpus needs a dev cluster with the real node")
        return self.cluster.real_node

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            [str(binaries.locate("kubectl")), "--kubeconfig", str(self.cluster.kubeconfig),
             "-n", self.namespace, *args],
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ToolError(f"kubectl {' '.join(args)}: {result.stderr.strip()[-800:]}")
        return result.stdout

    def prepare(self) -> None:
        """The namespace and the corpus image in the node's containerd (once per store)."""
        api = self.cluster.admin_client()
        try:
            access.ensure_namespace(api, self.namespace)
        finally:
            close(api)
        started = time.monotonic()
        setup.import_image(self.node, binaries.node_tools(), "corpus", self.image.tar)
        self.timings["image import"] = time.monotonic() - started

    # --- one scenario ---------------------------------------------------------------------

    def capture(self, scenario: Scenario, directory: Path) -> dict[str, Any]:
        """Run, capture and store ``scenario`` in ``directory``; returns its truth."""
        started = time.monotonic()
        with contextlib.ExitStack() as cleanup:
            server = None
            if scenario.listener is not None:
                server = hostnet.listener(scenario.listener)
                cleanup.callback(server.close)
            api = None
            if scenario.api_access:
                self._grant_pod_reader()
                # kube-proxy routes the Service's ClusterIP to the API server (realnode.addons).
                cluster_ip = self.kubectl(
                    "get", "svc", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"
                )
                api = f"{cluster_ip}:443"
            values = truth.placeholders(gateway(), server.port if server else None, api)
            cleanup.callback(self._delete_pod, scenario.name)
            self._apply_pod(scenario, values)
            pod = self._wait_ready(scenario)
            for client in scenario.clients:
                conn = hostnet.open_client(pod["status"]["podIP"], client)
                cleanup.callback(conn.close)
            time.sleep(scenario.settle)
            init_pid = self._init_pid(pod, scenario.target)
            procs = self._settled(scenario, init_pid, values)
            archive, status = self._checkpoint(scenario)
            directory.mkdir(parents=True, exist_ok=True)
            tar = directory / f"{scenario.name}.tar"
            shutil.copyfile(archive["path"], tar)
            result = truth.build(
                scenario,
                procs,
                values,
                definitionHash=scenario_hash(scenario, self.image.name),
                image=self.image.name,
                pod=f"{self.namespace}/{scenario.name}",
                container=scenario.target,
                archive={"file": tar.name, "sha256": archive["sha256"], "size": tar.stat().st_size},
                capturedAt=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                operatorVerdict=_suspicious(status),
            )
            (directory / f"{scenario.name}.truth.json").write_text(json.dumps(result, indent=1))
            self.stack.delete_checkpoint(self.namespace, scenario.name)
        self.timings[scenario.name] = time.monotonic() - started
        return result

    def _apply_pod(self, scenario: Scenario, values: dict[str, str]) -> None:
        self._delete_pod(scenario.name)
        manifest = pod_manifest(scenario, self.image.name, values)
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))

    def _wait_ready(self, scenario: Scenario) -> dict[str, Any]:
        name = scenario.name
        self.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s", timeout=130)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                self.kubectl("exec", name, "-c", "app", "--", "bash", "-c", scenario.ready)
                break
            except ToolError as exc:
                if time.monotonic() > deadline:
                    logs = self.kubectl("logs", name, "-c", "app", "--tail=20")
                    raise ToolError(f"{name} never ready: {exc}; logs: {logs}") from exc
                time.sleep(1)
        return dict(json.loads(self.kubectl("get", "pod", name, "-o", "json")))

    def _init_pid(self, pod: dict[str, Any], container: str) -> int:
        statuses = pod["status"]["containerStatuses"]
        cid = next(s["containerID"] for s in statuses if s["name"] == container)
        info = json.loads(self.node.crictl("inspect", cid.split("://", 1)[1]))
        return int(info["info"]["pid"])

    def _settled(
        self, scenario: Scenario, init_pid: int, values: dict[str, str]
    ) -> list[procfs.Proc]:
        """The container's processes once every expectation resolves (shells connect, dropped
        binaries start), or the last reason why not."""
        deadline = time.monotonic() + 60
        while True:
            procs = procfs.snapshot(init_pid)
            try:
                for expect in scenario.expect:
                    truth.resolve(expect, procs, values)
                return procs
            except truth.TruthError as exc:
                if time.monotonic() > deadline:
                    raise ToolError(f"{scenario.name}: {exc}") from exc
                time.sleep(1)

    def _checkpoint(self, scenario: Scenario) -> tuple[dict[str, Any], dict[str, Any]]:
        name = scenario.name
        with contextlib.suppress(Exception):
            self.stack.delete_checkpoint(self.namespace, name)
            processes.wait_until(
                lambda: self.stack.get_checkpoint(self.namespace, name) is None, 60
            )
        spec = {"podName": name, "containers": [scenario.target]}
        self.stack.create_checkpoint(self.namespace, name, spec)
        obj = self.stack.wait_phase(self.namespace, name, timeout=CAPTURE_TIMEOUT)
        status = obj["status"]
        if status["phase"] != "Completed":
            raise ToolError(f"{name}: capture {status['phase']}: {json.dumps(status)[:2000]}")
        return status["containers"][0]["archive"], status

    def _delete_pod(self, name: str) -> None:
        with contextlib.suppress(ToolError, subprocess.TimeoutExpired):
            self.kubectl("delete", "pod", name, "--ignore-not-found", "--grace-period=0",
                         "--force", "--wait=true", timeout=120)  # fmt: skip

    def _grant_pod_reader(self) -> None:
        """The namespace's default ServiceAccount may watch pods (the attacker's token)."""
        rbac = [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "corpus-pod-reader"},
             "rules": [{"apiGroups": [""], "resources": ["pods"],
                        "verbs": ["get", "list", "watch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "corpus-pod-reader"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "corpus-pod-reader"},
             "subjects": [{"kind": "ServiceAccount", "name": "default",
                           "namespace": self.namespace}]},
        ]  # fmt: skip
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))


def pod_manifest(scenario: Scenario, image: str, values: dict[str, str]) -> dict[str, Any]:
    def container(name: str, script: str) -> dict[str, Any]:
        return {
            "name": name,
            "image": image,
            "imagePullPolicy": "Never",
            "command": ["bash", "-c", truth.substitute(script, values)],
            "volumeMounts": [],
        }

    app = container("app", scenario.script)
    containers, volumes = [app], []
    if scenario.volume:
        volumes.append({"name": "data", "emptyDir": {}})
        app["volumeMounts"].append({"name": "data", "mountPath": scenario.volume})
    if scenario.shm:
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory"}})
        app["volumeMounts"].append({"name": "shm", "mountPath": "/dev/shm"})  # noqa: S108
    if scenario.sidecar:
        sidecar = container("sidecar", scenario.sidecar)
        volumes.append({"name": "shared", "emptyDir": {}})
        for c in (app, sidecar):
            c["volumeMounts"].append({"name": "shared", "mountPath": "/shared"})
        containers.append(sidecar)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": scenario.name, "labels": {"forensic-corpus": scenario.kind}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": containers,
            "volumes": volumes,
        },
    }


def _suspicious(status: dict[str, Any]) -> str | None:
    """The operator's Suspicious condition (informational: the benchmark decides its own)."""
    for c in status.get("conditions") or []:
        if c.get("type") == "Suspicious":
            return f"{c.get('status')} {c.get('reason')}: {c.get('message')}"
    return None


@contextlib.contextmanager
def real_node_stack(
    root: Path, namespace: str = NAMESPACE
) -> Iterator[tuple[DevCluster, LocalStack]]:
    """A dev cluster with the real node, the operator (watching ``namespace``) and the node's
    agent with its CRIU config (tcp-established); taken down however the block ends."""
    cluster = DevCluster.start(root / "cluster", nodes=0, with_real_node=True, die_with_parent=True)
    stack: LocalStack | None = None
    try:
        stack = LocalStack.prepare(cluster, root / "stack")
        api = cluster.admin_client()
        try:
            access.ensure_namespace(api, namespace)
        finally:
            close(api)
        stack.start_operator([namespace])
        if cluster.real_node is None:
            raise ToolError("the dev cluster started without its real node")
        values = root / "agent-values.yaml"
        values.write_text(yaml.safe_dump({"criuConfig": {"enabled": True}}))
        stack.start_agent(cluster.real_node.name, values_file=values, host_root=True)
        yield cluster, stack
    finally:
        if stack is not None:
            # ForensicCheckpoints go before the agent, or their finalizers block.
            with contextlib.suppress(Exception):
                _delete_all_checkpoints(stack, namespace)
            stack.stop()
        cluster.stop()


def _delete_all_checkpoints(stack: LocalStack, namespace: str) -> None:
    out = subprocess.run(
        [str(binaries.locate("kubectl")), "--kubeconfig", str(stack.cluster.kubeconfig),
         "-n", namespace, "delete", "fcp", "--all", "--wait=true", "--timeout=60s"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        print(f"corpus: deleting ForensicCheckpoints: {out.stderr.strip()[-300:]}")


def ensure_root() -> None:
    if os.geteuid() != 0:
        raise ToolError("make corpus needs root (the real node)")
