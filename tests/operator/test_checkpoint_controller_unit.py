"""``CheckpointController`` against in-memory fakes of its ports (controller/capture/ports.py): no
cluster, no agent, no network. Each pass is one ``step``; the clock is the test's. Over 400
lines because the fakes serve every scenario here (capture, hold, clean-up, re-capture), and
splitting them off would only move them."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest

from forensic_checkpoint.api.agent import (
    ArchiveInfo,
    CaptureRequest,
    CaptureState,
    CaptureStatus,
    CustodyFact,
    DeleteResult,
)
from forensic_checkpoint.api.custody import Actor, ActorKind, CustodyAction, KubeletResponse
from forensic_checkpoint.api.forensiccheckpoint import (
    AlertReference,
    AnalysisSummary,
    CaptureReasonSpec,
    ContainerCapturePhase,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
    Phase,
)
from forensic_checkpoint.api.forensicnode import AgentStatus, ForensicNode, ForensicNodeStatus
from forensic_checkpoint.controller.capture import checkpoints
from forensic_checkpoint.controller.capture.checkpoints import CheckpointController
from forensic_checkpoint.controller.config import OperatorConfig
from forensic_checkpoint.domain.capture import checkpoint_events, reconcile
from forensic_checkpoint.domain.capture.agents import AGENT_UNAVAILABLE, AgentTarget
from forensic_checkpoint.domain.capture.targets import PodFacts
from forensic_checkpoint.domain.evidence import checkpoint_custody, custody
from forensic_checkpoint.domain.evidence.checkpoint_custody import REQUESTED_BY_ANNOTATION
from forensic_checkpoint.domain.evidence.deletion import HOLD_KEY
from forensic_checkpoint.errors import AgentError

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
NODE = "node-a"
ENDPOINT = "https://10.0.0.7:8443"
SHA = "ab" * 32
REF = reconcile.CheckpointRef(name="incident", namespace="shop", uid="uid-1", generation=1)
SPEC = ForensicCheckpointSpec(pod_name="web")
METADATA = {"name": REF.name, "namespace": REF.namespace, "uid": REF.uid}
LOG = logging.getLogger(__name__)


# --- fakes of the ports -----------------------------------------------------------------------


class FakeCheckpoints:
    def __init__(self) -> None:
        self.written: list[ForensicCheckpointStatus] = []

    def write_status(
        self,
        namespace: str,
        name: str,
        status: ForensicCheckpointStatus,
        *,
        with_custody: bool = False,
    ) -> None:
        self.written.append(status)


@dataclass
class FakeForensicNodes:
    nodes: dict[str, ForensicNode] = field(default_factory=dict)

    def get(self, name: str) -> ForensicNode | None:
        return self.nodes.get(name)


@dataclass
class FakePods:
    pods: dict[tuple[str, str], PodFacts] = field(default_factory=dict)

    def get_facts(self, namespace: str, name: str) -> PodFacts | None:
        return self.pods.get((namespace, name))


@dataclass
class FakeAgents:
    """Jobs by capture key; ``failure`` makes every call raise it (an unreachable agent)."""

    jobs: dict[str, CaptureStatus] = field(default_factory=dict)
    submitted: list[CaptureRequest] = field(default_factory=list)
    holds: list[tuple[str, bool]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failure: AgentError | None = None

    def _check(self, agent: AgentTarget) -> None:
        # The agent is named by the pod's node: its token and certificate are that node's.
        assert agent == AgentTarget(NODE, ENDPOINT)
        if self.failure is not None:
            raise self.failure

    async def submit(self, agent: AgentTarget, request: CaptureRequest) -> CaptureStatus:
        self._check(agent)
        self.submitted.append(request)
        return self.jobs.setdefault(
            request.key, CaptureStatus(key=request.key, state=CaptureState.QUEUED)
        )

    async def status(self, agent: AgentTarget, key: str, **_wait: Any) -> CaptureStatus | None:
        self._check(agent)
        return self.jobs.get(key)

    async def hold(self, agent: AgentTarget, key: str, *, hold: bool) -> CaptureStatus | None:
        self._check(agent)
        self.holds.append((key, hold))
        return self.jobs.get(key)

    async def delete(self, agent: AgentTarget, key: str) -> DeleteResult | None:
        self._check(agent)
        self.deleted.append(key)
        return DeleteResult(key=key, deleted=[f"/ckpt/{key}.tar"])


@dataclass
class Harness:
    controller: CheckpointController
    nodes: FakeForensicNodes
    pods: FakePods
    agents: FakeAgents
    clock: list[datetime]

    def step(self, status: ForensicCheckpointStatus) -> ForensicCheckpointStatus:
        return asyncio.run(self.controller.step(REF, SPEC, status, metadata=METADATA))

    def later(self, delta: timedelta) -> None:
        self.clock[0] += delta


def _agent_node(heartbeat: datetime = T0) -> ForensicNode:
    return ForensicNode(
        metadata={"name": NODE},
        status=ForensicNodeStatus(agent=AgentStatus(endpoint=ENDPOINT, heartbeat_time=heartbeat)),
    )


def _pod() -> PodFacts:
    return PodFacts(
        name="web",
        namespace=REF.namespace,
        uid="pod-uid",
        phase="Running",
        node_name=NODE,
        containers=("app",),
        running=frozenset({"app"}),
    )


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Harness:
    clock = [T0]
    nodes = FakeForensicNodes({NODE: _agent_node()})
    pods = FakePods({(REF.namespace, "web"): _pod()})
    agents = FakeAgents()
    controller = CheckpointController(
        OperatorConfig(agent_wait=timedelta(seconds=60)),
        checkpoints=FakeCheckpoints(),
        forensic_nodes=nodes,
        pods=pods,
        agents=agents,
        clock=lambda: clock[0],
    )
    # The ForensicNode cache is keyed on the monotonic clock: a fresh read on every pass.
    monkeypatch.setattr(checkpoints, "_NODE_TTL", 0.0)
    return Harness(controller, nodes, pods, agents, clock)


def _requested(h: Harness) -> ForensicCheckpointStatus:
    """Two passes: the targets are recorded, then the agent is asked."""
    return h.step(h.step(ForensicCheckpointStatus()))


# --- step -------------------------------------------------------------------------------------


def test_a_new_checkpoint_records_its_targets_then_asks_the_agent(harness: Harness) -> None:
    resolved = harness.step(ForensicCheckpointStatus())
    assert resolved.node_name == NODE
    assert [c.name for c in resolved.containers] == ["app"]
    assert resolved.containers[0].requested_at is None
    assert not harness.agents.submitted  # the keys are written before the agent is asked
    assert [e.action for e in resolved.custody] == [CustodyAction.REQUESTED]

    requested = harness.step(resolved)
    (request,) = harness.agents.submitted
    assert request.key == resolved.containers[0].capture_key
    assert (request.pod_name, request.container) == ("web", "app")
    assert requested.containers[0].requested_at == T0
    assert requested.containers[0].phase == ContainerCapturePhase.CAPTURING
    assert requested.agent_endpoint == ENDPOINT


def test_a_missing_pod_fails_at_once(harness: Harness) -> None:
    harness.pods.pods.clear()
    failed = harness.step(ForensicCheckpointStatus())
    assert failed.phase == Phase.FAILED
    assert "does not exist" in failed.message


def test_without_an_agent_the_checkpoint_waits_then_fails_at_the_deadline(
    harness: Harness,
) -> None:
    resolved = harness.step(ForensicCheckpointStatus())
    harness.nodes.nodes.clear()
    waiting = harness.step(resolved)
    assert waiting.phase == Phase.PENDING
    assert waiting.reason == AGENT_UNAVAILABLE
    assert not harness.agents.submitted

    harness.later(timedelta(seconds=61))
    failed = harness.step(waiting)
    assert failed.phase == Phase.FAILED
    assert failed.reason == AGENT_UNAVAILABLE
    assert failed.containers[0].phase == ContainerCapturePhase.FAILED


def test_a_stale_heartbeat_counts_as_no_agent(harness: Harness) -> None:
    resolved = harness.step(ForensicCheckpointStatus())
    harness.nodes.nodes[NODE] = _agent_node(heartbeat=T0 - timedelta(minutes=5))
    assert harness.step(resolved).reason == AGENT_UNAVAILABLE


def test_a_completed_capture_becomes_the_status_with_archive_and_summary(
    harness: Harness,
) -> None:
    requested = _requested(harness)
    key = requested.containers[0].capture_key
    harness.agents.jobs[key] = CaptureStatus(
        key=key,
        state=CaptureState.COMPLETED,
        archive=ArchiveInfo(path="/ckpt/a.tar", sha256=SHA, size_bytes=4096, captured_at=T0),
        finished_at=T0 + timedelta(seconds=3),
        summary=AnalysisSummary(process_count=2),
    )
    harness.later(timedelta(seconds=5))
    done = harness.step(requested)
    assert done.phase == Phase.COMPLETED
    (container,) = done.containers
    assert container.phase == ContainerCapturePhase.COMPLETED
    assert container.archive is not None and container.archive.sha256 == SHA
    assert container.summary is not None and container.summary.process_count == 2
    assert container.report_url == f"{ENDPOINT}/v1/captures/{key}/report"
    assert container.finished_at == T0 + timedelta(seconds=3)
    assert len(harness.agents.submitted) == 1  # polled, not asked again


def test_an_agent_that_lost_the_job_is_asked_again_with_the_same_key(harness: Harness) -> None:
    requested = _requested(harness)
    harness.agents.jobs.clear()
    again = harness.step(requested)
    assert [r.key for r in harness.agents.submitted] == [requested.containers[0].capture_key] * 2
    assert again.containers[0].requested_at == T0  # the first request's time stays


def test_an_agent_error_waits_until_the_capture_is_overdue(harness: Harness) -> None:
    requested = _requested(harness)
    harness.agents.failure = AgentError("agent unreachable", reason="AgentUnavailable")
    waiting = harness.step(requested)
    assert waiting.containers[0].phase == ContainerCapturePhase.CAPTURING
    assert waiting.containers[0].message == "agent unreachable"

    harness.later(timedelta(hours=1))
    failed = harness.step(waiting)
    assert failed.phase == Phase.FAILED
    assert failed.containers[0].reason == "AgentUnavailable"


def test_the_hold_of_the_checkpoint_goes_into_the_request(harness: Harness) -> None:
    resolved = harness.step(ForensicCheckpointStatus())
    held = dataclasses.replace(REF, held=True)
    asyncio.run(harness.controller.step(held, SPEC, resolved, metadata=METADATA))
    assert harness.agents.submitted[0].hold is True


# --- hold and clean-up ------------------------------------------------------------------------


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[checkpoint_events.Event]:
    posted: list[checkpoint_events.Event] = []
    monkeypatch.setattr(checkpoints, "_post", lambda body, event: posted.append(event))
    return posted


def _body(status: ForensicCheckpointStatus, *, held: bool = False) -> kopf.Body:
    labels = {HOLD_KEY: "true"} if held else {}
    raw: Any = {
        "apiVersion": "forensic-checkpoint.dev/v1alpha1",
        "kind": "ForensicCheckpoint",
        "metadata": {**METADATA, "labels": labels},
        "spec": SPEC.to_kube(),
        "status": status.to_kube(),
    }
    return kopf.Body(raw)


def _run(call: Callable[[], Any]) -> None:
    asyncio.run(call())


def test_setting_the_hold_tells_the_agent_and_posts_an_event(
    harness: Harness, events: list[checkpoint_events.Event]
) -> None:
    requested = _requested(harness)
    body = _body(requested, held=True)
    _run(lambda: harness.controller.sync_hold(body, {}, {HOLD_KEY: "true"}, LOG))
    assert harness.agents.holds == [(requested.containers[0].capture_key, True)]
    assert [(e.reason, e.message) for e in events] == [
        ("HoldSet", f"legal hold set on node {NODE}")
    ]


def test_an_unchanged_hold_or_an_unrequested_capture_needs_no_agent(
    harness: Harness, events: list[checkpoint_events.Event]
) -> None:
    requested = _requested(harness)
    _run(lambda: harness.controller.sync_hold(_body(requested), {}, {"other": "x"}, LOG))
    resolved = ForensicCheckpointStatus(node_name=NODE)
    _run(lambda: harness.controller.sync_hold(_body(resolved), {}, {HOLD_KEY: "true"}, LOG))
    assert harness.agents.holds == []
    assert events == []


def test_deleting_the_checkpoint_deletes_its_archives_on_the_node(
    harness: Harness, events: list[checkpoint_events.Event]
) -> None:
    requested = _requested(harness)
    _run(lambda: harness.controller.clean_up(_body(requested), 0, LOG))
    assert harness.agents.deleted == [requested.containers[0].capture_key]
    assert [(e.type, e.reason) for e in events] == [("Normal", "ArchiveDeleted")]


def test_a_held_checkpoint_keeps_its_archives(
    harness: Harness, events: list[checkpoint_events.Event]
) -> None:
    requested = _requested(harness)
    _run(lambda: harness.controller.clean_up(_body(requested, held=True), 0, LOG))
    assert harness.agents.deleted == []
    assert [e.reason for e in events] == ["ArchiveHeld"]


def test_the_clean_up_retries_then_gives_up_with_a_warning(
    harness: Harness, events: list[checkpoint_events.Event]
) -> None:
    requested = _requested(harness)
    harness.agents.failure = AgentError("agent unreachable", reason="AgentUnavailable")
    with pytest.raises(kopf.TemporaryError):
        _run(lambda: harness.controller.clean_up(_body(requested), 0, LOG))
    assert events == []
    retries = OperatorConfig().delete_retries
    _run(lambda: harness.controller.clean_up(_body(requested), retries, LOG))
    assert [(e.type, e.reason) for e in events] == [("Warning", "ArchiveNotDeleted")]


# --- who requested it -------------------------------------------------------------------------

RECEIVER = "system:serviceaccount:forensic-checkpoint:forensic-checkpoint-operator"


def test_alert_provenance_needs_the_receivers_own_identity(harness: Harness) -> None:
    """The operator asks who it is (the receiver's identity) once, and only for an alert
    reference; a reference not stamped with that identity is recorded as its creator."""
    asked: list[str] = []

    def whoami() -> str:
        asked.append("whoami")
        return RECEIVER

    controller = CheckpointController(
        OperatorConfig(),
        checkpoints=FakeCheckpoints(),
        forensic_nodes=harness.nodes,
        pods=harness.pods,
        agents=harness.agents,
        clock=lambda: T0,
        whoami=whoami,
    )
    alert = AlertReference(source="falco", name="Shell in container", fingerprint="abc")
    spec = SPEC.model_copy(update={"reason": CaptureReasonSpec(alert=alert)})

    def requested(spec: ForensicCheckpointSpec, by: str) -> Actor:
        metadata = {**METADATA, "annotations": {REQUESTED_BY_ANNOTATION: by}}
        status = asyncio.run(
            controller.step(REF, spec, ForensicCheckpointStatus(), metadata=metadata)
        )
        return status.custody[0].actor

    assert requested(SPEC, "alice").kind is ActorKind.USER
    assert not asked
    assert requested(spec, RECEIVER) == Actor(kind=ActorKind.ALERT, name="falco/abc")
    assert requested(spec, "mallory") == Actor(kind=ActorKind.USER, name="mallory")
    assert asked == ["whoami"]


# --- an agent that lost its job state ---------------------------------------------------------


def _captured(key: str, sha: str, at: datetime) -> CaptureStatus:
    """The agent's job after the kubelet answered: archive hashed, analysis running."""
    fact = CustodyFact(
        action=CustodyAction.CAPTURED,
        time=at,
        actor=f"agent/{NODE}",
        node=NODE,
        container="app",
        kubelet_response=KubeletResponse(status_code=200, message=f"/ckpt/{sha[:8]}.tar"),
        sha256=sha,
        size_bytes=4096,
    )
    return CaptureStatus(
        key=key,
        state=CaptureState.ANALYZING,
        archive=ArchiveInfo(
            path=f"/ckpt/{sha[:8]}.tar", sha256=sha, size_bytes=4096, captured_at=at
        ),
        custody_events=[fact],
    )


def test_a_recapture_after_lost_agent_state_is_in_custody_with_both_archives(
    harness: Harness,
) -> None:
    requested = _requested(harness)
    key = requested.containers[0].capture_key
    harness.agents.jobs[key] = _captured(key, SHA, T0 + timedelta(seconds=2))
    harness.later(timedelta(seconds=5))
    first = harness.step(requested)
    assert [e.action for e in first.custody] == [CustodyAction.REQUESTED, CustodyAction.CAPTURED]

    # The agent's state directory is wiped: it answers 404 for the key, and is asked again.
    harness.agents.jobs.clear()
    harness.later(timedelta(seconds=5))
    again = harness.step(first)
    assert [r.key for r in harness.agents.submitted] == [key, key]
    (container,) = again.containers
    assert container.recaptures == 1
    lost = again.custody[-1]
    assert (lost.action, lost.reason, lost.container) == (
        CustodyAction.REQUESTED,
        checkpoint_custody.AGENT_STATE_LOST,
        "app",
    )
    assert lost.actor.kind == ActorKind.OPERATOR
    assert lost.message is not None and key in lost.message
    (warning,) = [
        e for e in checkpoint_events.transition_events(first, again) if e.type == "Warning"
    ]
    assert warning.reason == "Recaptured"
    assert key in warning.message and NODE in warning.message
    assert checkpoint_events.transition_events(again, again) == []  # posted once

    # The new job's facts start again at index 0: its Captured fact is recorded all the same.
    second_sha = "cd" * 32
    harness.agents.jobs[key] = _captured(key, second_sha, T0 + timedelta(seconds=12))
    harness.later(timedelta(seconds=5))
    second = harness.step(again)
    captured = [e.sha256 for e in second.custody if e.action == CustodyAction.CAPTURED]
    assert captured == [SHA, second_sha]
    assert [e.action for e in second.custody] == [
        CustodyAction.REQUESTED,
        CustodyAction.CAPTURED,
        CustodyAction.REQUESTED,
        CustodyAction.CAPTURED,
    ]
    assert second.containers[0].archive is not None
    assert second.containers[0].archive.sha256 == second_sha
    assert custody.verify_chain(second.custody, REF.uid).ok
    (event,) = checkpoint_events.transition_events(again, second)
    assert (event.reason, second_sha in event.message) == ("Captured", True)
    # Polling the same job again records nothing twice.
    harness.later(timedelta(seconds=5))
    assert harness.step(second).custody == second.custody
