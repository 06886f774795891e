"""The operator's admission of alert captures (controller/capture/admission.py) and the daemon's
path from a new ForensicCheckpoint to the agent request, on in-memory fakes (issue 19, item 1).

- Over the cap an alert capture waits, in acceptance order, and a release wakes the next one
  at once; after a restart the seed (one list) restores who holds a slot and the queue's order.
- No poll interval sits between a new ForensicCheckpoint and its agent request (before: the
  daemon slept ``--poll-interval`` after recording the targets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from tests.operator.test_checkpoint_controller_unit import (
    NODE,
    REF,
    FakeAgents,
    FakeCheckpoints,
    FakeForensicNodes,
    FakePods,
    _agent_node,
    _captured,
    _pod,
)

from forensic_checkpoint.api.agent import CaptureState
from forensic_checkpoint.api.forensiccheckpoint import Phase
from forensic_checkpoint.controller.capture import checkpoints
from forensic_checkpoint.controller.capture.admission import AlertAdmission, SlotFact
from forensic_checkpoint.controller.capture.checkpoints import CheckpointController
from forensic_checkpoint.controller.config import OperatorConfig
from forensic_checkpoint.domain.alerts.admission import Slot

LOG = logging.getLogger(__name__)
#: Long enough that a test waiting on a poll would time out.
POLL = 30.0


def order(n: int) -> tuple[str, str, str]:
    return (f"2026-12-06T12:00:{n:02d}+00:00", "", f"ns/a{n}")


def admission(cap: int, seed: list[SlotFact] | None = None) -> AlertAdmission:
    async def listing() -> list[SlotFact]:
        return list(seed or [])

    return AlertAdmission(cap, listing)


def test_over_the_cap_captures_wait_and_go_in_acceptance_order() -> None:
    async def run() -> list[str]:
        gate = admission(cap=1)
        assert await gate.enter("ns/a1", order(1))
        # Entered out of order: a3's handler started before a2's.
        assert not await gate.enter("ns/a3", order(3))
        assert not await gate.enter("ns/a2", order(2))
        assert gate.position("ns/a2") == 1 and gate.position("ns/a3") == 2
        admitted: list[str] = []

        async def waiter(key: str) -> None:
            await gate.wait(key)
            admitted.append(key)
            await asyncio.sleep(0)
            gate.release(key)

        tasks = [asyncio.create_task(waiter(k)) for k in ("ns/a3", "ns/a2")]
        await asyncio.sleep(0)
        assert admitted == []  # nothing frees a slot until a1 is released
        gate.release("ns/a1")
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=1.0)
        return admitted

    assert asyncio.run(run()) == ["ns/a2", "ns/a3"]


def test_the_seed_restores_held_slots_and_the_queue_order_after_a_restart() -> None:
    """a1 was capturing and a2 queued when the operator stopped; a3 came later. a3's handler
    runs first after the restart: it must neither take a1's slot nor pass a2."""

    async def run() -> None:
        gate = admission(
            cap=1,
            seed=[
                SlotFact("ns/a2", order(2), Slot.WAITING),
                SlotFact("ns/a1", order(1), Slot.HOLDING),
                SlotFact("ns/a0", order(0), Slot.DONE),
            ],
        )
        assert not await gate.enter("ns/a3", order(3))
        assert gate.holding == 1 and gate.waiting == 2
        gate.release("ns/a1")
        # a2's handler has not asked yet: the slot is kept for it, a3 still waits.
        assert gate.position("ns/a3") == 1 and gate.holding == 1
        assert await gate.enter("ns/a2", order(2))
        gate.release("ns/a2")
        await asyncio.wait_for(gate.wait("ns/a3"), timeout=1.0)

    asyncio.run(run())


class _Stopped:
    """kopf's DaemonStopped as the daemon uses it: truthiness and ``wait``."""

    def __init__(self) -> None:
        self.flag = asyncio.Event()

    def __bool__(self) -> bool:
        return self.flag.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flag.wait(), timeout)
        return self.flag.is_set()


def _controller(
    gate: AlertAdmission | None,
) -> tuple[CheckpointController, FakeAgents, FakeCheckpoints]:
    agents, written = FakeAgents(), FakeCheckpoints()
    controller = CheckpointController(
        OperatorConfig(poll_interval=POLL, agent_wait=timedelta(seconds=60)),
        checkpoints=written,
        forensic_nodes=FakeForensicNodes({NODE: _agent_node(datetime.now(UTC))}),
        pods=FakePods({(REF.namespace, "web"): _pod()}),
        agents=agents,
        admission=gate,
    )
    return controller, agents, written


def _current(body: kopf.Body) -> Callable[[], kopf.Body]:
    return lambda: body


def _body(alert: bool) -> kopf.Body:
    spec: dict[str, Any] = {"podName": "web"}
    if alert:
        spec["reason"] = {
            "alert": {"source": "falco", "name": "Shell", "acceptedAt": "2026-12-06T12:00:05Z"}
        }
    return kopf.Body(
        {
            "apiVersion": "forensic-checkpoint.dev/v1alpha1",
            "kind": "ForensicCheckpoint",
            "metadata": {"name": REF.name, "namespace": REF.namespace, "uid": REF.uid},
            "spec": spec,
        }
    )


async def _until(check: Any, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.fixture(autouse=True)
def _no_kopf_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoints, "_post", lambda body, event: None)
    monkeypatch.setattr(checkpoints, "_NODE_TTL", 0.0)


def test_a_new_checkpoint_asks_its_agent_without_a_poll_interval() -> None:
    async def run() -> bool:
        controller, agents, _ = _controller(None)
        stopped = _Stopped()
        task = asyncio.create_task(controller.drive(_current(_body(alert=False)), stopped, LOG))
        asked = await _until(lambda: agents.submitted, timeout=2.0)
        stopped.flag.set()
        await asyncio.wait_for(task, timeout=5.0)
        return asked

    assert asyncio.run(run()), f"the agent was not asked within 2 s (poll interval {POLL} s)"


def test_a_queued_alert_capture_waits_in_phase_queued_and_goes_when_a_slot_frees() -> None:
    async def run() -> None:
        gate = admission(cap=1, seed=[SlotFact("other/a1", order(1), Slot.HOLDING)])
        controller, agents, written = _controller(gate)
        stopped = _Stopped()
        task = asyncio.create_task(controller.drive(_current(_body(alert=True)), stopped, LOG))
        assert await _until(lambda: written.written, timeout=2.0)
        queued = written.written[0]
        assert queued.phase is Phase.QUEUED
        reconciling = {c.type: (c.status, c.reason) for c in queued.conditions}["Reconciling"]
        assert reconciling == ("True", "Queued"), queued.conditions
        await asyncio.sleep(0.1)
        assert agents.submitted == []  # the slot is a1's
        gate.release("other/a1")  # a1 is past its kubelet call: no poll, the release wakes it
        assert await _until(lambda: agents.submitted, timeout=2.0)
        stopped.flag.set()
        await asyncio.wait_for(task, timeout=5.0)
        assert gate.holding == 0  # the stopped daemon gave its slot back

    asyncio.run(run())


async def _ended(task: asyncio.Task[None], stopped: _Stopped) -> None:
    """Stop the capture task as ``in_flight`` does: the flag, then a cancel (a status request
    waiting in the agent is a read, cancelled safely)."""
    stopped.flag.set()
    await asyncio.wait({task}, timeout=1.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class WaitingAgents(FakeAgents):
    """An agent that, like the real one, answers a ``wait_while`` status request only once the
    job left those states or has a new custody fact."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    async def status(self, agent: Any, key: str, **wait: Any) -> Any:
        states = wait.get("wait_while", ())
        if states and wait.get("wait_seconds", 0) > 0:
            facts = len(self.jobs[key].custody_events)
            with contextlib.suppress(TimeoutError):
                while (
                    self.jobs[key].state in states and len(self.jobs[key].custody_events) == facts
                ):
                    await asyncio.wait_for(self.changed.wait(), wait["wait_seconds"])
                    self.changed.clear()
        return await super().status(agent, key)

    def move(self, key: str, **update: Any) -> None:
        self.jobs[key] = self.jobs[key].model_copy(update=update)
        self.changed.set()


@dataclass
class _Driven:
    """A capture task of the controller against :class:`WaitingAgents`, past its request."""

    agents: WaitingAgents
    written: FakeCheckpoints
    stopped: _Stopped
    task: asyncio.Task[None]
    key: str

    def wrote(self, phase: Phase) -> bool:
        return any(s.phase is phase for s in self.written.written)


async def _driven() -> _Driven:
    controller, _, written = _controller(None)
    agents = WaitingAgents()
    controller._agents = agents
    stopped = _Stopped()
    task = asyncio.create_task(controller.drive(_current(_body(alert=False)), stopped, LOG))
    assert await _until(lambda: agents.submitted, timeout=2.0)
    (key,) = agents.jobs
    return _Driven(agents, written, stopped, task, key)


def test_the_recorded_archive_and_the_end_of_the_analysis_are_seen_at_once() -> None:
    """No poll interval between the kubelet's answer and Completed (issue 19's post-capture
    time): an analysing container's status request waits in the agent, which answers when the
    archive's sha256 is recorded (a new Captured fact) and again when the job ends."""

    async def run() -> None:
        capture = await _driven()
        capture.agents.move(capture.key, state=CaptureState.ANALYZING)
        assert await _until(lambda: capture.wrote(Phase.ANALYZING), timeout=2.0)
        await asyncio.sleep(0.2)  # the next status request now waits in the agent
        captured = _captured(capture.key, "ab" * 32, datetime.now(UTC))
        capture.agents.move(
            capture.key, archive=captured.archive, custody_events=captured.custody_events
        )

        def archive_written() -> bool:
            return any(c.archive is not None for s in capture.written.written for c in s.containers)

        assert await _until(archive_written, timeout=2.0)  # not POLL (30 s) later
        await asyncio.sleep(0.2)
        capture.agents.move(
            capture.key, state=CaptureState.COMPLETED, finished_at=datetime.now(UTC)
        )
        done = await _until(lambda: capture.wrote(Phase.COMPLETED), timeout=2.0)
        await _ended(capture.task, capture.stopped)
        assert done, [s.phase for s in capture.written.written]

    asyncio.run(run())


def test_the_end_of_a_kubelet_call_is_seen_at_once_not_at_the_next_poll() -> None:
    """The slot of an alert capture frees when its kubelet call ends (Analyzing): the operator
    must see that when it happens. Before: at its next poll, ``--poll-interval`` later."""

    async def run() -> None:
        capture = await _driven()
        await asyncio.sleep(0.1)
        capture.agents.move(capture.key, state=CaptureState.ANALYZING)
        seen = await _until(lambda: capture.wrote(Phase.ANALYZING), timeout=2.0)
        await _ended(capture.task, capture.stopped)
        assert seen, [s.phase for s in capture.written.written]

    asyncio.run(run())
