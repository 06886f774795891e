"""`cluster up` / `down` as a user runs them: a second cluster next to the session's one,
which must leave no process and no listening port behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from forensic_checkpoint.k8s.client import close, from_kubeconfig
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import processes
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.cluster.testing import ClusterHandle

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forensic_checkpoint_dev", "cluster", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_up_env_down_leaves_nothing_behind(dev_cluster: ClusterHandle, tmp_path: Path) -> None:
    if not dev_cluster.local:
        pytest.skip("starts its own local cluster")
    directory = tmp_path / "second"
    up = cli("up", "--nodes", "1", "--dir", str(directory), "--no-build")
    assert up.returncode == 0, up.stderr
    assert "dev cluster up in" in up.stderr
    state = json.loads((directory / "state.json").read_text())
    kubeconfig = directory.resolve() / "admin.kubeconfig"
    assert up.stdout.strip() == f"export KUBECONFIG={kubeconfig}"
    assert cli("env", "--dir", str(directory)).stdout == up.stdout
    # a separate cluster: its own ports, alongside the session's
    assert state["server"] != dev_cluster.server
    assert set(state["pids"]) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet-node-1",
    }
    api = from_kubeconfig(kubeconfig)
    try:
        nodes = apiserver.request(api, "GET", "/api/v1/nodes")["items"]
        assert [n["metadata"]["name"] for n in nodes] == ["node-1"]
    finally:
        close(api)
    pids, ports = state["allPids"], state["ports"]
    assert all(processes.alive(p) for p in pids)
    assert all(processes.port_open(p) for p in ports)

    down = cli("down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    assert not [p for p in pids if processes.alive(p)]
    assert not [p for p in ports if processes.port_open(p)]
    assert not directory.exists()
    # the session cluster is untouched
    assert apiserver.request(dev_cluster.admin_client(), "GET", "/api/v1/nodes/node-1")


def test_down_without_a_cluster_is_an_error(tmp_path: Path) -> None:
    result = cli("down", "--dir", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert "no dev cluster state" in result.stderr


def test_start_retries_when_a_picked_port_is_taken(
    dev_cluster: ClusterHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Free ports are picked before the servers bind them; losing that race restarts."""
    if not dev_cluster.local:
        pytest.skip("starts its own local cluster")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([processes.free_port(), processes.free_port(), taken])
        real = processes.free_port
        monkeypatch.setattr(processes, "free_port", lambda: next(picks, None) or real())
        cluster = DevCluster.start(tmp_path / "c", nodes=0, die_with_parent=True, crds_dir=None)
        try:
            assert cluster.server != f"https://127.0.0.1:{taken}"
            assert processes.port_open(int(cluster.server.rsplit(":", 1)[1]))
        finally:
            cluster.stop()
    assert cluster.leftovers() == ([], [])


STARTER = """
import sys
from pathlib import Path
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
DevCluster.start(Path(sys.argv[1]), nodes=1, die_with_parent=True, crds_dir=None)
print("up", flush=True)
sys.stdin.read()
"""


def test_killed_starter_takes_its_cluster_along(dev_cluster: ClusterHandle, tmp_path: Path) -> None:
    """The fixture's clusters die with the process that started them, even on SIGKILL."""
    if not dev_cluster.local:
        pytest.skip("starts its own local cluster")
    directory = tmp_path / "orphan"
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert starter.stdout is not None
        assert starter.stdout.readline().strip() == "up"
        state = json.loads((directory / "state.json").read_text())
        assert all(processes.alive(p) for p in state["allPids"])
    finally:
        starter.kill()
        starter.wait()
        assert starter.stdin is not None and starter.stdout is not None
        starter.stdin.close()
        starter.stdout.close()
    assert processes.wait_until(lambda: not any(processes.alive(p) for p in state["allPids"]), 10)
    assert processes.wait_until(lambda: not any(processes.port_open(p) for p in state["ports"]), 10)
