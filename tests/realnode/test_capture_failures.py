"""What the real kubelet and runtime do when a capture cannot simply work: an established TCP
connection (with and without the agent's CRIU config), a pod that is not running, a pod in a
crash loop, and the ContainerCheckpoint gate switched off."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator

import pytest
from tests.realnode.support import RealNodeEnv, wait_for

from forensic_checkpoint_dev.realnode.host import BRIDGE, CRIU_CONFIG


class _Listener:
    """A TCP server on the host that accepts and holds connections (the pods' remote peer)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))  # noqa: S104 - the pods reach it through the bridge
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                conn.sendall(b"id\n")
                self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def _gateway() -> str:
    """The bridge's address: the host as the pods see it."""
    import subprocess

    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", BRIDGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split("inet ", 1)[1].split("/", 1)[0]


@pytest.fixture
def connected_pod(real_env: RealNodeEnv) -> Iterator[tuple[str, int]]:
    listener = _Listener()
    real_env.busybox_pod("warmup", "sleep 3600")  # the bridge exists once a pod runs
    gateway = _gateway()
    real_env.busybox_pod("revshell", f"sleep 3600 | nc {gateway} {listener.port}")
    wait_for(lambda: listener.accepted, 30, "the pod never connected")
    try:
        yield gateway, listener.port
    finally:
        real_env.delete_pod("revshell")
        real_env.delete_pod("warmup")
        listener.close()


def test_established_tcp_needs_the_criu_config_then_completes_with_it(
    real_env: RealNodeEnv, connected_pod: tuple[str, int]
) -> None:
    gateway, port = connected_pod
    spec = {"podName": "revshell", "containers": ["app"]}
    obj = real_env.capture("tcp-default", spec)
    status = obj["status"]
    assert status["phase"] == "Failed", json.dumps(status)[:2000]
    container = status["containers"][0]
    assert container["reason"] == "EstablishedTCPNeedsConfig", container
    assert container["kubeletStatusCode"] == 500
    # The agent read runc's criu-dump.log named in the kubelet's 500 body.
    assert "tcp-established" in container["criuLogExcerpt"], container

    real_env.start_agent(values={"criuConfig": {"enabled": True}})
    try:
        obj = real_env.capture("tcp-configured", spec)
        status = obj["status"]
        assert status["phase"] == "Completed", json.dumps(status)[:2000]
        established = status["containers"][0]["summary"]["established"]
        assert any(e["remote"] == f"{gateway}:{port}" for e in established), established
    finally:
        # criuConfig off: the agent removes the file it wrote (and only that file).
        real_env.start_agent(values={"criuConfig": {"enabled": False}})
    assert not CRIU_CONFIG.exists()


def test_pod_that_is_not_running_fails_without_a_kubelet_call(real_env: RealNodeEnv) -> None:
    real_env.busybox_pod("finished", "exit 0", restart="Never", ready=False)
    wait_for(
        lambda: real_env.pod("finished")["status"].get("phase") == "Succeeded",
        60,
        "the pod did not finish",
    )
    calls = real_env.node.runtime_calls()
    obj = real_env.capture("not-running", {"podName": "finished"}, timeout=60)
    assert obj["status"]["phase"] == "Failed"
    assert obj["status"]["reason"] == "PodNotRunning", obj["status"]
    assert real_env.node.runtime_calls() == calls
    real_env.delete_pod("finished")


def test_crash_looping_container_fails_with_a_clear_reason(real_env: RealNodeEnv) -> None:
    real_env.busybox_pod("crashing", "sleep 1; exit 3", ready=False)
    wait_for(
        lambda: any(
            (c.get("restartCount") or 0) >= 1 and "running" not in (c.get("state") or {})
            for c in real_env.pod("crashing")["status"].get("containerStatuses") or []
        ),
        120,
        "the container never crashed and waited for its restart",
        interval=0.1,
    )
    calls = real_env.node.runtime_calls()
    obj = real_env.capture("crash-loop", {"podName": "crashing"}, timeout=60)
    status = obj["status"]
    assert status["phase"] == "Failed", status
    reasons = {status.get("reason")} | {c.get("reason") for c in status.get("containers", [])}
    assert reasons & {"ContainerNotRunning", "PodNotRunning"}, status
    assert real_env.node.runtime_calls() == calls
    real_env.delete_pod("crashing")


def test_checkpoint_gate_off_shows_on_the_forensicnode_and_fails_fast(
    real_env: RealNodeEnv,
) -> None:
    real_env.busybox_pod("gated", "sleep 3600")
    real_env.cluster.restart_real_kubelet(checkpoint_gate=False)
    try:
        real_env.start_agent()  # its first readiness round sees the gate off
        ready = real_env.stack.readiness(real_env.node.name)
        assert ready.get("status") == "False", ready
        assert ready.get("reason") == "CheckpointingDisabled", ready
        calls = real_env.node.runtime_calls()
        obj = real_env.capture("gate-off", {"podName": "gated"}, timeout=60)
        status = obj["status"]
        assert status["phase"] == "Failed", status
        reasons = {status.get("reason")} | {c.get("reason") for c in status.get("containers", [])}
        assert "CheckpointingDisabled" in reasons, status
        assert real_env.node.runtime_calls() == calls
    finally:
        real_env.cluster.restart_real_kubelet(checkpoint_gate=True)
        real_env.start_agent()
        real_env.delete_pod("gated")
    assert real_env.stack.readiness(real_env.node.name).get("status") == "True"
