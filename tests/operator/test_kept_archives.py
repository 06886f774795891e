"""Kept archives are followed without a task per object: the capture daemon ends (and is not
started) once only a kept archive is left, and one batched call per node's agent
(:mod:`forensic_checkpoint.controller.capture.kept_archives`) brings the agent's facts into the
status, writing only what changed. In-memory fakes, as in test_checkpoint_controller_unit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import kopf
import pytest
from tests.operator.test_checkpoint_controller_unit import (
    ENDPOINT,
    LOG,
    NODE,
    SHA,
    T0,
    FakeAgents,
    FakeCheckpoints,
    FakePods,
)

from forensic_checkpoint.api.agent import (
    ArchiveInfo,
    CaptureDigests,
    CaptureState,
    CaptureStatus,
    CustodyFact,
    digest_of,
)
from forensic_checkpoint.api.custody import CustodyAction
from forensic_checkpoint.api.forensiccheckpoint import (
    ArchiveStatus,
    ContainerCapturePhase,
    ContainerStatus,
    ForensicCheckpoint,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
    Phase,
)
from forensic_checkpoint.api.forensicnode import AgentStatus, ForensicNode, ForensicNodeStatus
from forensic_checkpoint.controller.capture import agent_client, wiring
from forensic_checkpoint.controller.capture.checkpoints import CheckpointController
from forensic_checkpoint.controller.capture.kept_archives import KeptArchives
from forensic_checkpoint.controller.config import OperatorConfig
from forensic_checkpoint.domain.capture.agents import AgentTarget
from forensic_checkpoint.domain.evidence import checkpoint_custody
from forensic_checkpoint.errors import AgentError

OTHER = "node-b"
#: Three days after the captures: retention's time.
NOW = T0 + timedelta(days=3)
OTHER_ENDPOINT = "https://10.0.0.8:8443"


def _fact(action: CustodyAction, at: datetime) -> CustodyFact:
    return CustodyFact(
        action=action,
        time=at,
        actor=f"agent/{NODE}",
        node=NODE,
        container="app",
        sha256=SHA,
        size_bytes=4096,
        reason="RetentionMaxAge" if action is CustodyAction.DELETED else None,
    )


def _captured(key: str) -> CustodyFact:
    return _fact(CustodyAction.CAPTURED, T0)


def _deleted() -> CustodyFact:
    return _fact(CustodyAction.DELETED, NOW)


def _completed(uid: str, node: str = NODE) -> ForensicCheckpoint:
    """A Completed object with a kept archive whose chain holds Requested and Captured."""
    key = f"{uid}-app"
    status = ForensicCheckpointStatus(
        phase=Phase.COMPLETED,
        node_name=node,
        containers=[
            ContainerStatus(
                name="app",
                capture_key=key,
                phase=ContainerCapturePhase.COMPLETED,
                archive=ArchiveStatus(
                    path=f"/ckpt/{key}.tar", sha256=SHA, size_bytes=4096, captured_at=T0
                ),
            )
        ],
    )
    metadata = {"name": f"fcp-{uid}", "namespace": "shop", "uid": uid}
    status = checkpoint_custody.record_request(
        status,
        subject=uid,
        metadata=metadata,
        spec=ForensicCheckpointSpec(pod_name="web"),
        at=T0,
        receiver="",
    )
    status = checkpoint_custody.record_facts(status, {"app": [_captured(key)]}, subject=uid)
    return ForensicCheckpoint(
        metadata=metadata, spec=ForensicCheckpointSpec(pod_name="web"), status=status
    )


def _job(uid: str, *facts: CustodyFact, deleted: bool = False) -> CaptureStatus:
    return CaptureStatus(
        key=f"{uid}-app",
        state=CaptureState.COMPLETED,
        archive=ArchiveInfo(
            path=f"/ckpt/{uid}-app.tar", sha256=SHA, size_bytes=4096, captured_at=T0
        ),
        archive_deleted_at=NOW if deleted else None,
        custody_events=list(facts),
    )


def _node(name: str, endpoint: str) -> ForensicNode:
    return ForensicNode(
        metadata={"name": name},
        status=ForensicNodeStatus(agent=AgentStatus(endpoint=endpoint, heartbeat_time=NOW)),
    )


@dataclass
class Store:
    """The API server's objects (``CheckpointReader``) and the nodes (``ForensicNodeLister``)."""

    objects: dict[str, ForensicCheckpoint] = field(default_factory=dict)
    nodes: list[ForensicNode] = field(default_factory=list)
    reads: int = 0

    def get(self, namespace: str, name: str) -> ForensicCheckpoint | None:
        self.reads += 1
        return next((o for o in self.objects.values() if o.metadata["name"] == name), None)

    def list(self) -> list[ForensicNode]:
        return list(self.nodes)


@dataclass
class BatchAgents(FakeAgents):
    """Jobs per node; ``digests`` answers for one node's agent, ``None`` for an old agent."""

    by_node: dict[str, dict[str, CaptureStatus]] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    old: bool = False

    async def digests(self, agent: AgentTarget) -> CaptureDigests | None:
        assert agent.endpoint == {NODE: ENDPOINT, OTHER: OTHER_ENDPOINT}[agent.node_name]
        self.listed.append(agent.node_name)
        if self.old:
            return None
        jobs = self.by_node.get(agent.node_name, {})
        return CaptureDigests(
            node_name=agent.node_name, items=[digest_of(j) for j in jobs.values()]
        )

    async def status(self, agent: AgentTarget, key: str, **_wait: Any) -> CaptureStatus | None:
        self.asked.append(key)
        return self.by_node.get(agent.node_name, {}).get(key)


def _kept(store: Store, agents: BatchAgents) -> tuple[KeptArchives, FakeCheckpoints]:
    written = FakeCheckpoints()
    controller = CheckpointController(
        OperatorConfig(),
        checkpoints=written,
        forensic_nodes=store,  # type: ignore[arg-type]  # not used by record()
        pods=FakePods(),
        agents=agents,
        clock=lambda: NOW,
    )
    kept = KeptArchives(
        controller,
        checkpoints=store,
        forensic_nodes=store,
        agents=agents,
        interval=300.0,
        clock=lambda: NOW,
    )
    return kept, written


def _body(fcp: ForensicCheckpoint) -> Any:
    return fcp.to_kube()


@pytest.fixture(autouse=True)
def _no_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "event", lambda *a, **k: None)


def _sweep(kept: KeptArchives, store: Store) -> int:
    async def run() -> int:
        for fcp in store.objects.values():
            kept.observe(_body(fcp), None)
        try:
            return await kept.sweep()
        finally:
            await kept.stop()

    return asyncio.run(run())


class NeverStopped:
    """kopf's ``DaemonStopped`` of an operator that keeps running."""

    def __bool__(self) -> bool:
        return False

    async def wait(self, timeout: float | None = None) -> bool:
        await asyncio.sleep(timeout or 0)
        return False


# --- no task per kept archive ------------------------------------------------------------------


def test_the_daemon_ends_once_only_a_kept_archive_is_left() -> None:
    """It used to poll the agent every ``--archive-poll-interval`` until stopped: one task per
    kept archive, 10,000 tasks for 10,000 archives."""
    agents = FakeAgents()
    controller = CheckpointController(
        OperatorConfig(archive_poll_interval=0.01),
        checkpoints=FakeCheckpoints(),
        forensic_nodes=Store(),  # type: ignore[arg-type]
        pods=FakePods(),
        agents=agents,
        clock=lambda: T0,
    )
    fcp = _completed("uid-1")
    body = kopf.Body(_body(fcp))

    async def drive() -> None:
        stopped: Any = NeverStopped()
        await asyncio.wait_for(controller.drive(lambda: body, stopped, LOG), timeout=2)

    asyncio.run(drive())
    assert not agents.submitted


# --- one call per node ---------------------------------------------------------------------


def _cluster(old: bool = False) -> tuple[Store, BatchAgents]:
    store = Store(nodes=[_node(NODE, ENDPOINT), _node(OTHER, OTHER_ENDPOINT)])
    agents = BatchAgents(old=old)
    for i in range(3):
        fcp = _completed(f"a{i}")
        store.objects[f"a{i}"] = fcp
        agents.by_node.setdefault(NODE, {})[f"a{i}-app"] = _job(f"a{i}", _captured(f"a{i}-app"))
    for i in range(2):
        fcp = _completed(f"b{i}", node=OTHER)
        store.objects[f"b{i}"] = fcp
        agents.by_node.setdefault(OTHER, {})[f"b{i}-app"] = _job(f"b{i}", _captured(f"b{i}-app"))
    return store, agents


def test_one_call_per_node_and_nothing_written_when_nothing_changed() -> None:
    store, agents = _cluster()
    kept, written = _kept(store, agents)
    assert _sweep(kept, store) == 0
    assert sorted(agents.listed) == [NODE, OTHER]  # one call per node, not per archive
    assert not agents.asked and not store.reads and not written.written


def test_a_retention_deletion_on_the_node_reaches_the_status_and_the_chain() -> None:
    store, agents = _cluster()
    agents.by_node[NODE]["a1-app"] = _job("a1", _captured("a1-app"), _deleted(), deleted=True)
    kept, written = _kept(store, agents)
    assert _sweep(kept, store) == 1
    assert agents.asked == ["a1-app"]  # only the job with news is read in full
    (status,) = written.written
    assert status.containers[0].archive_deleted
    assert [e.action for e in status.custody] == [
        CustodyAction.REQUESTED,
        CustodyAction.CAPTURED,
        CustodyAction.DELETED,
    ]
    assert status.custody[-1].reason == "RetentionMaxAge"
    assert status.phase == Phase.COMPLETED
    # Once written, the watch drops it from the index: nothing is left to follow.
    store.objects["a1"].status = status
    kept.observe(_body(store.objects["a1"]), "MODIFIED")
    assert "a1" not in {e.uid for e in kept.kept()}


def test_an_agent_without_the_list_is_asked_job_by_job() -> None:
    store, agents = _cluster(old=True)
    agents.by_node[OTHER]["b0-app"] = _job("b0", _captured("b0-app"), _deleted(), deleted=True)
    kept, written = _kept(store, agents)
    assert _sweep(kept, store) == 1
    assert len(agents.asked) == 5
    assert written.written[0].containers[0].archive_deleted


def test_a_deleted_object_leaves_the_index() -> None:
    store, agents = _cluster()
    kept, _ = _kept(store, agents)

    async def run() -> list[str]:
        for fcp in store.objects.values():
            kept.observe(_body(fcp), None)
        kept.observe(_body(store.objects["a0"]), "DELETED")
        await kept.stop()
        return sorted(e.uid for e in kept.kept())

    assert asyncio.run(run()) == ["a1", "a2", "b0", "b1"]


def test_a_list_naming_another_node_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    client = agent_client.AgentClient(None, None, None)  # type: ignore[arg-type]

    async def call(*_: Any, **__: Any) -> tuple[int, str]:
        return 200, CaptureDigests(node_name=OTHER).to_json()

    monkeypatch.setattr(client, "_call", call)
    with pytest.raises(AgentError, match="listed the jobs of node"):
        asyncio.run(client.digests(AgentTarget(NODE, ENDPOINT)))


def test_the_index_is_fed_in_the_event_loop() -> None:
    """kopf runs a sync handler in its thread pool, where the index could not start its sweeps
    (no running event loop): the watch handler must be a coroutine."""
    store, agents = _cluster()
    kept, _ = _kept(store, agents)
    registry = kopf.OperatorRegistry()
    wiring.register(registry, kept._controller, kept)
    (observe,) = registry._watching.get_all_handlers()
    assert observe.id == "watch" and asyncio.iscoroutinefunction(observe.fn)
