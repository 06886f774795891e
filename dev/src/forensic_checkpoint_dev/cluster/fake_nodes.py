"""The fake kubelets of a dev cluster: how they are spawned, when they are up, and a handle
(``FakeNode``) to verify and steer each one."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from forensic_checkpoint.errors import ClusterError, ToolError
from forensic_checkpoint_dev.cluster import pki, processes
from forensic_checkpoint_dev.cluster.components import ClusterPki
from forensic_checkpoint_dev.kubelet.config import KubeletConfig, prepare_default_archive


@dataclass
class FakeNode:
    """One fake kubelet: where it listens, where it writes, how to verify and steer it."""

    name: str
    port: int
    checkpoint_dir: Path
    serving_ca: Path  #: the "kubelet serving CA" that signed this kubelet's certificate
    pid: int
    address: str = "127.0.0.1"  #: where it listens: its InternalIP

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        resp = requests.request(
            method, f"{self.url}{path}", json=body, verify=str(self.serving_ca), timeout=10
        )
        if resp.status_code != 200:
            raise ClusterError(f"fake kubelet {self.name}: {method} {path}: {resp.text}")
        return resp.json()

    def calls(self) -> list[dict[str, Any]]:
        """Every checkpoint request this kubelet has answered (path, status, user)."""
        return list(self._control("GET", "/_fake/calls")["calls"])

    def reset_calls(self) -> None:
        self._control("DELETE", "/_fake/calls")

    def config(self) -> dict[str, Any]:
        return dict(self._control("GET", "/_fake/config"))

    def set_config(self, **settings: Any) -> dict[str, Any]:
        """``checkpointGate=False``, ``runtimeVersion="containerd://2.3.4"``,
        ``failWith="<CRI error>"`` (``None`` clears it)."""
        return dict(self._control("PUT", "/_fake/config", settings))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "checkpointDir": str(self.checkpoint_dir),
            "servingCA": str(self.serving_ca),
            "pid": self.pid,
            "address": self.address,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FakeNode:
        return cls(
            name=raw["name"],
            port=raw["port"],
            checkpoint_dir=Path(raw["checkpointDir"]),
            serving_ca=Path(raw["servingCA"]),
            pid=raw["pid"],
            address=raw.get("address", "127.0.0.1"),
        )


@dataclass(frozen=True)
class Spawned:
    """A fake kubelet started, not yet known to be up."""

    name: str
    ready_file: Path  #: written by the kubelet once it listens (its port and address)
    checkpoint_dir: Path
    serving_ca: Path
    pid: int


def spawn(  # noqa: PLR0917 - the cluster's settings for its fake nodes, in order
    directory: Path,
    server: str,
    p: ClusterPki,
    count: int,
    archive: Path,
    runtime_version: str,
    *,
    die_with_parent: bool,
    address: str,
    started: Callable[[str, int], None],
) -> list[Spawned]:
    """Start ``count`` fake kubelets (``started(component, pid)`` after each); they register
    once the API server answers."""
    spawned: list[Spawned] = []
    for i in range(count):
        name = f"node-{i + 1}"
        base = directory / "nodes" / name
        state = base / "state"
        state.mkdir(parents=True, exist_ok=True)
        kubeconfig = base / "kubeconfig"
        pki.write_kubeconfig(kubeconfig, server, p.ca.cert, p.node_client(name))
        serving = p.node_serving(name)
        default = prepare_default_archive(archive, directory / "default-archive.tar")
        config = KubeletConfig(
            node_name=name,
            kubeconfig=kubeconfig,
            serving_cert=serving.cert,
            serving_key=serving.key,
            client_ca=p.client_ca_bundle,
            checkpoint_dir=base / "checkpoints",
            state_dir=state,
            default_archive=default,
            runtime_version=runtime_version,
            address=address,
        )
        (base / "config.json").write_text(json.dumps(config.to_json(), indent=2))
        proc = processes.spawn(
            [sys.executable, "-m", "forensic_checkpoint_dev.kubelet.fake_kubelet",
             base / "config.json"],
            directory / "logs" / f"kubelet-{name}.log",
            die_with_parent=die_with_parent,
        )  # fmt: skip
        started(f"kubelet-{name}", proc.pid)
        spawned.append(
            Spawned(name, state / "ready.json", config.checkpoint_dir, p.kubelet_ca.cert, proc.pid)
        )
    return spawned


def wait_up(
    spawned: list[Spawned], logs: Path, timeout: float, on_up: Callable[[FakeNode], None]
) -> None:
    """Until each kubelet listens (``on_up`` for each, in order); ``ToolError`` when one exits
    or is not up in time."""
    for node in spawned:

        def up(node: Spawned = node) -> bool:
            if not processes.alive(node.pid):
                raise ToolError(
                    f"fake kubelet {node.name} exited; see {logs}/kubelet-{node.name}.log"
                )
            return node.ready_file.exists()

        if not processes.wait_until(up, timeout):
            raise ToolError(f"fake kubelet {node.name} not ready within {timeout:.0f} s")
        ready = json.loads(node.ready_file.read_text())
        address = str(ready.get("address", "127.0.0.1"))
        on_up(
            FakeNode(
                node.name, int(ready["port"]), node.checkpoint_dir, node.serving_ca, node.pid,
                address,
            )
        )  # fmt: skip
