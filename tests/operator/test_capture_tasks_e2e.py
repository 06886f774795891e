"""In-flight captures are the operator's own tasks, one per object in flight, on a real API
server: a finished ForensicCheckpoint has none (also not after a restart, whose first listing
sees it), an in-flight one resumes after a restart with no second kubelet call, and a deletion
in the middle of a capture stops its task and lets the object go (the finalizer's clean-up)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from tests.operator.operator_e2e_support import NAMESPACE, create_pod, kubelet_calls

from forensic_checkpoint_dev.cluster import processes
from forensic_checkpoint_dev.stack import LocalStack

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _tasks(stack: LocalStack) -> float | None:
    """The operator's ``forensic_checkpoint_operator_capture_tasks`` (None: not served)."""
    text = requests.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).text
    found = re.search(r"^forensic_checkpoint_operator_capture_tasks (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def _requested(obj: dict[str, Any]) -> bool:
    return any(c.get("requestedAt") for c in obj["status"].get("containers", []))


def test_only_in_flight_captures_have_a_task_and_resume_after_a_restart(
    stack: LocalStack,
) -> None:
    create_pod(stack, "done-task", "node-2", containers=("app",))
    stack.create_checkpoint(NAMESPACE, "done-task", {"podName": "done-task"})
    assert stack.wait_phase(NAMESPACE, "done-task")["status"]["phase"] == "Completed"
    # Long enough to still be in flight once the new operator is up on a loaded machine.
    create_pod(stack, "slow-task", "node-2", containers=("app",), fault="latency=20s")
    stack.create_checkpoint(NAMESPACE, "slow-task", {"podName": "slow-task"})
    stack.wait_phase(NAMESPACE, "slow-task", ("Capturing",), timeout=30, predicate=_requested)
    stack.kill_operator()
    stack.start_operator([NAMESPACE])
    # The first listing sees both (and every other test's finished objects): one task.
    assert processes.wait_until(lambda: _tasks(stack) == 1, 15, interval=0.2), _tasks(stack)
    assert stack.wait_phase(NAMESPACE, "slow-task", timeout=90)["status"]["phase"] == "Completed"
    assert processes.wait_until(lambda: _tasks(stack) == 0, 20, interval=0.2), _tasks(stack)
    assert len(kubelet_calls(stack, "node-2", "slow-task")) == 1


def test_a_deletion_mid_capture_stops_its_task(stack: LocalStack) -> None:
    create_pod(stack, "gone-task", "node-2", containers=("app",), fault="latency=15s")
    stack.create_checkpoint(NAMESPACE, "gone-task", {"podName": "gone-task"})
    stack.wait_phase(NAMESPACE, "gone-task", ("Capturing",), timeout=30, predicate=_requested)
    assert _tasks(stack) == 1
    stack.delete_checkpoint(NAMESPACE, "gone-task")
    assert processes.wait_until(lambda: stack.get_checkpoint(NAMESPACE, "gone-task") is None, 30)
    assert _tasks(stack) == 0

    # The fake kubelet records its call when it answers, after the latency: one, never two.
    def calls() -> int:
        return len(kubelet_calls(stack, "node-2", "gone-task"))

    assert processes.wait_until(lambda: calls() == 1, 30, interval=0.5), calls()
