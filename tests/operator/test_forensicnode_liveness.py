"""A ForensicNode whose agent stopped heartbeating turns Ready Unknown, as a Node does; the
operator marks it (``--agent-heartbeat-grace``, 10 s in this stack), the agent's next beat after
it resumes sets Ready again at once. Each agent's ForensicNode is owned by its Node."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from tests.operator.operator_e2e_support import condition

from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import processes
from forensic_checkpoint_dev.stack import LocalStack

NODE = "node-2"


def _forensic_node(stack: LocalStack, name: str) -> dict[str, Any]:
    api = stack.cluster.admin_client()
    try:
        path = f"/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes/{name}"
        return dict(apiserver.request(api, "GET", path))
    finally:
        close(api)


def _ready(stack: LocalStack) -> dict[str, Any]:
    return condition(_forensic_node(stack, NODE), "Ready")


def test_a_stopped_agent_turns_ready_unknown_within_the_grace(stack: LocalStack) -> None:
    assert _ready(stack)["status"] == "True"
    agent = stack.agents[NODE]
    os.killpg(agent.pid, signal.SIGSTOP)  # the agent is frozen: no heartbeat, no readiness
    stopped = time.monotonic()
    try:
        assert processes.wait_until(lambda: _ready(stack)["status"] == "Unknown", 30, interval=0.5)
        after = time.monotonic() - stopped
        ready = _ready(stack)
        print(f"\nReady Unknown {after:.1f} s after the agent stopped: {ready}")
        # grace 10 s after the last beat (at most 2 s before the stop), checked every 2.5 s
        assert after < 10 + 2.5 + 5, after
        assert ready["reason"] == "AgentNotHeartbeating"
        assert ready["message"].startswith("The agent stopped posting its heartbeat: last")
        assert "grace 10 s" in ready["message"]
    finally:
        os.killpg(agent.pid, signal.SIGCONT)
    # Its next beat sees the mark and probes at once (readiness rounds are 60 s apart).
    resumed = time.monotonic()
    assert processes.wait_until(lambda: _ready(stack)["status"] == "True", 20, interval=0.5)
    assert time.monotonic() - resumed < 20


def test_every_agent_forensic_node_is_owned_by_its_node(stack: LocalStack) -> None:
    api = stack.cluster.admin_client()
    try:
        for name in stack.agents:
            uid = apiserver.request(api, "GET", f"/api/v1/nodes/{name}")["metadata"]["uid"]
            owners = _forensic_node(stack, name)["metadata"]["ownerReferences"]
            assert owners == [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]
    finally:
        close(api)
