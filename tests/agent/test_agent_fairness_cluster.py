"""One tenant cannot stall a node's agent for everyone (issue 15, items 3 and 8), against the
dev cluster: the agent in-process with its RBAC, the fake kubelet over mutual TLS.

Before: four captures of one slow container held all four capture workers, so another
container's capture waited for the first slow call and its analysis; a slow analysis held its
capture worker, so new captures waited for it; DELETE of an Analyzing job answered 409.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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
    _until,
    ids,  # noqa: F401 - the module's identities fixture
)

from forensic_checkpoint.agent.process import AgentProcess
from forensic_checkpoint.api.agent import CaptureStatus, DeleteResult

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

Start = Callable[..., tuple[AgentProcess, Caller]]


@pytest.fixture
def start_agent(dev_cluster: Any, ids: Identities, tmp_path: Path) -> Iterator[Start]:  # noqa: F811
    """An agent for the second node (``AgentConfig`` overrides; ``analyzer=`` replaces the
    process analyzer), stopped after the test."""
    started: list[AgentProcess] = []

    def start(analyzer: Any = None, **overrides: Any) -> tuple[AgentProcess, Caller]:
        node = dev_cluster.nodes[1]
        config = _config(ids, node, tmp_path / "state", **overrides)
        runtime = AgentProcess(config, analyzer=analyzer)
        runtime.start()
        started.append(runtime)
        return runtime, Caller(runtime.endpoint, ids.serving_ca, ids.operator_token)

    yield start
    for runtime in started:
        runtime.stop()


def _status(caller: Caller, key: str) -> CaptureStatus:
    return CaptureStatus.model_validate_json(caller.call("GET", f"/v1/captures/{key}").text)


def test_captures_of_one_slow_container_leave_other_containers_alone(
    dev_cluster: Any,
    ids: Identities,  # noqa: F811
    start_agent: Start,
) -> None:
    node = dev_cluster.nodes[1]
    _, caller = start_agent()  # four capture workers
    slow = _pod(dev_cluster, ids, node.name, fault="latency=4s")
    other = _pod(dev_cluster, ids, node.name)
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
    assert len(_calls_for(node, slow)) == 4 and len(_calls_for(node, other)) == 1


def test_a_slow_analysis_does_not_delay_a_new_captures_kubelet_call(
    dev_cluster: Any,
    ids: Identities,  # noqa: F811
    start_agent: Start,
) -> None:
    node = dev_cluster.nodes[1]
    analyzer = GatedAnalyzer()  # a pathological analysis: it runs until released
    _, caller = start_agent(analyzer, capture_workers=2, analysis_workers=1)
    busy = [caller.capture(_pod(dev_cluster, ids, node.name)) for _ in range(2)]
    for key in busy:
        _until(caller, key, lambda s: s.state == "Analyzing", 20)
    pod = _pod(dev_cluster, ids, node.name)
    started = time.monotonic()
    key = caller.capture(pod)
    captured = _until(caller, key, lambda s: s.archive is not None, 10)
    elapsed = time.monotonic() - started
    print(f"a capture while the analyses are stuck: hashed after {elapsed:.2f} s")
    assert len(_calls_for(node, pod)) == 1
    assert captured.state == "Analyzing" and elapsed < 5, (captured, elapsed)
    assert [_status(caller, k).state for k in busy] == ["Analyzing"] * 2
    analyzer.release.set()
    for k in [*busy, key]:
        assert caller.wait(k).state == "Completed"


def test_delete_during_the_analysis_stops_it_and_deletes_the_files(
    dev_cluster: Any,
    ids: Identities,  # noqa: F811
    start_agent: Start,
    tmp_path: Path,
) -> None:
    node = dev_cluster.nodes[1]
    analyzer = GatedAnalyzer()
    _, caller = start_agent(analyzer)
    key = caller.capture(_pod(dev_cluster, ids, node.name))
    analysing = _until(caller, key, lambda s: s.state == "Analyzing" and key in analyzer.holding)
    assert analysing.archive is not None
    archive, report = Path(analysing.archive.path), tmp_path / "state" / "reports" / f"{key}.json"
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

    held = caller.capture(_pod(dev_cluster, ids, node.name))
    _until(caller, held, lambda s: held in analyzer.holding, 20)
    assert caller.call("PUT", f"/v1/captures/{held}/hold", json={"hold": True}).status_code == 200
    refused = caller.call("DELETE", f"/v1/captures/{held}")
    assert (refused.status_code, refused.json()["reason"]) == (409, "HeldNotExported")
    analyzer.release.set()
    kept = caller.wait(held)
    assert kept.state == "Completed" and kept.archive is not None
    assert sha256(Path(kept.archive.path)) == kept.archive.sha256
    assert not report.exists()  # the stopped analysis wrote nothing afterwards
