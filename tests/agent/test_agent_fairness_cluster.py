"""One tenant cannot stall a node's agent for everyone (issue 15, items 3 and 8), against the
dev cluster: the agent in-process with its RBAC, the fake kubelet over mutual TLS.

Before: four captures of one slow container held all four capture workers, so another
container's capture waited for the first slow call and its analysis; a slow analysis held its
capture worker, so new captures waited for it; DELETE of an Analyzing job answered 409.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.agent.agent_support import GatedAnalyzer, sha256
from tests.agent.test_agent_cluster import (
    Caller,
    Identities,
    _calls_for,
    _config,
    _pod,
    _start_agent_process,
    _until,
    ids,  # noqa: F401 - the module's identities fixture
)

from forensic_checkpoint.agent.process import AgentProcess
from forensic_checkpoint.api.agent import CaptureStatus, DeleteResult

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@dataclass
class SecondNode:
    """The dev cluster's second node, its pods, and agents for it (stopped after the test)."""

    dev_cluster: Any
    ids: Identities
    state: Path
    agents: list[AgentProcess] = field(default_factory=list)

    @property
    def node(self) -> Any:
        return self.dev_cluster.nodes[1]

    def pod(self, **kwargs: Any) -> dict[str, Any]:
        return _pod(self.dev_cluster, self.ids, self.node.name, **kwargs)

    def agent(self, analyzer: Any = None, **overrides: Any) -> Caller:
        """An agent (``AgentConfig`` overrides; ``analyzer`` replaces the process analyzer)."""
        config = _config(self.ids, self.node, self.state, **overrides)
        runtime = AgentProcess(config, analyzer=analyzer)
        runtime.start()
        self.agents.append(runtime)
        return Caller(
            runtime.endpoint, self.ids.serving_ca, self.ids.operator_tokens[self.node.name]
        )


@pytest.fixture
def second(dev_cluster: Any, ids: Identities, tmp_path: Path) -> Iterator[SecondNode]:  # noqa: F811
    node = SecondNode(dev_cluster, ids, tmp_path / "state")
    yield node
    for runtime in node.agents:
        runtime.stop()


def _status(caller: Caller, key: str) -> CaptureStatus:
    return CaptureStatus.model_validate_json(caller.call("GET", f"/v1/captures/{key}").text)


def test_captures_of_one_slow_container_leave_other_containers_alone(second: SecondNode) -> None:
    caller = second.agent()  # four capture workers
    slow, other = second.pod(fault="latency=4s"), second.pod()
    keys = [caller.capture(slow) for _ in range(4)]
    _until(caller, keys[0], lambda s: s.state == "Capturing", 10)
    started = time.monotonic()
    done = caller.wait(caller.capture(other), timeout=60)
    elapsed = time.monotonic() - started
    slow_states = [_status(caller, key).state for key in keys]
    health = caller.call("GET", "/healthz").json()
    finals = [caller.wait(key, timeout=90) for key in keys]
    print(f"another container's capture beside 4 captures of a slow one: {elapsed:.2f} s")
    assert done.state == "Completed", done
    # Before: the other capture waited for a worker until the first slow one had finished.
    assert not any(state.terminal for state in slow_states), slow_states
    assert elapsed < 4, elapsed
    assert health["queueDepth"] == 3  # the slow ones wait for their container
    assert [s.state for s in finals] == ["Completed"] * 4
    assert len(_calls_for(second.node, slow)) == 4 and len(_calls_for(second.node, other)) == 1


def test_a_slow_analysis_does_not_delay_a_new_captures_kubelet_call(second: SecondNode) -> None:
    analyzer = GatedAnalyzer()  # a pathological analysis: it runs until released
    caller = second.agent(analyzer, capture_workers=2, analysis_workers=1)
    busy = [caller.capture(second.pod()) for _ in range(2)]
    for key in busy:
        _until(caller, key, lambda s: s.state == "Analyzing", 20)
    pod = second.pod()
    started = time.monotonic()
    key = caller.capture(pod)
    captured = _until(caller, key, lambda s: s.archive is not None, 10)
    elapsed = time.monotonic() - started
    print(f"a capture while the analyses are stuck: hashed after {elapsed:.2f} s")
    assert len(_calls_for(second.node, pod)) == 1
    assert captured.state == "Analyzing" and elapsed < 5, (captured, elapsed)
    assert [_status(caller, k).state for k in busy] == ["Analyzing"] * 2
    analyzer.release.set()
    for k in [*busy, key]:
        assert caller.wait(k).state == "Completed"


def test_delete_during_the_analysis_stops_it_and_deletes_the_files(second: SecondNode) -> None:
    analyzer = GatedAnalyzer()
    caller = second.agent(analyzer)
    key = caller.capture(second.pod())
    analysing = _until(caller, key, lambda s: s.state == "Analyzing" and key in analyzer.holding)
    assert analysing.archive is not None
    archive, report = Path(analysing.archive.path), second.state / "reports" / f"{key}.json"
    assert archive.exists() and report.exists()

    answer = caller.call("DELETE", f"/v1/captures/{key}")

    assert answer.status_code == 200, answer.text  # before: 409 CaptureInProgress
    result = DeleteResult.model_validate_json(answer.text)
    assert sorted(result.deleted) == sorted([str(archive), str(report)]) and not result.pending
    assert analyzer.stopped == [key] and analyzer.holding == set()
    assert not archive.exists() and not report.exists()
    status = _status(caller, key)
    assert (status.state, status.reason) == ("Failed", "DeletedWhileAnalyzing")
    [fact] = [f for f in status.custody_events if f.action == "Deleted"]
    assert fact.reason == "DeletedWhileAnalyzing"
    assert fact.sha256 == analysing.archive.sha256 and fact.size_bytes
    assert caller.call("GET", f"/v1/captures/{key}/archive").status_code == 404

    held = caller.capture(second.pod())
    _until(caller, held, lambda s: held in analyzer.holding, 20)
    assert caller.call("PUT", f"/v1/captures/{held}/hold", json={"hold": True}).status_code == 200
    refused = caller.call("DELETE", f"/v1/captures/{held}")
    assert (refused.status_code, refused.json()["reason"]) == (409, "HeldNotExported")
    analyzer.release.set()
    kept = caller.wait(held)
    assert kept.state == "Completed" and kept.archive is not None
    assert sha256(Path(kept.archive.path)) == kept.archive.sha256
    assert not report.exists()  # the stopped analysis wrote nothing afterwards


def test_a_stopped_agent_lets_its_running_kubelet_call_finish(second: SecondNode) -> None:
    """SIGTERM (a rolling update) stops taking jobs but lets a running kubelet call finish, as
    the agent did when its workers were a thread pool: the kubelet would cancel a cut call."""
    log_file = second.state.parent / "agent.log"
    pod = second.pod(fault="latency=3s")
    first, caller = _start_agent_process(second.ids, second.node, second.state, log_file)
    try:
        key = caller.capture(pod)
        _until(caller, key, lambda s: s.state == "Capturing", 10)
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
    finally:
        first.kill()
    again, caller = _start_agent_process(second.ids, second.node, second.state, log_file)
    try:
        status = caller.wait(key, timeout=60)
    finally:
        again.terminate()
        again.wait(20)
    assert status.state == "Completed", status
    assert status.kubelet_status_code == 200  # answered to the first agent, not adopted
    [call] = _calls_for(second.node, pod)
    assert not call.get("canceled")
