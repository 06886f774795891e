"""The ForensicCheckpoint handlers: one task per object (:mod:`.in_flight`) drives the capture
(and follows an export or a late archive), a deletion handler cleans the node. The task ends when
only a kept archive is left to follow: :mod:`.kept_archives` follows those, one call per node.
Both handlers gather facts, call :mod:`forensic_checkpoint.domain` for the decision and write
the result; no decision is made here.

The task is async (agent calls through aiohttp, Kubernetes calls through ``asyncio.to_thread``)
and re-derives everything from the object's status on start, so an operator restart at any
point resumes the same capture jobs. No poll interval sits between a new object and Completed:
an alert capture waits for its slot on an event (:mod:`.admission`), and a capturing or
analysing container's status request waits in the agent until the job moves on or has a new
custody fact. A finished capture whose archive is kept has no task: it is followed with its
node's others (:mod:`.kept_archives`).

Over 400 lines because the capture, the hold and the clean-up share the controller's state
(node cache, admission, identity) and the one status write (``record``, which the kept-archive
sweeps use too); the hold and clean-up handlers are the piece to move out next.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from forensic_checkpoint.api.agent import CaptureState, CaptureStatus, CustodyFact
from forensic_checkpoint.api.forensiccheckpoint import (
    ContainerCapturePhase,
    ContainerStatus,
    ForensicCheckpoint,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.controller import metrics
from forensic_checkpoint.controller.capture.admission import AlertAdmission, take_slot
from forensic_checkpoint.controller.capture.ports import (
    CheckpointStatusWriter,
    ForensicNodeReader,
    NodeAgents,
    PodReader,
    Stopped,
)
from forensic_checkpoint.controller.config import OperatorConfig
from forensic_checkpoint.domain.alerts import admission as alert_admission
from forensic_checkpoint.domain.alerts.admission import Slot, is_alert_capture
from forensic_checkpoint.domain.alerts.admission import slot as admission_slot
from forensic_checkpoint.domain.capture import checkpoint_events, finished, reconcile
from forensic_checkpoint.domain.capture.agent_wait import after_agent_error, stop_waiting_for_agent
from forensic_checkpoint.domain.capture.agents import (
    AgentTarget,
    AgentUnavailable,
    agent_facts,
    usable_agent,
)
from forensic_checkpoint.domain.capture.checkpoint_conditions import conditions
from forensic_checkpoint.domain.capture.targets import resolve_targets
from forensic_checkpoint.domain.evidence import checkpoint_custody
from forensic_checkpoint.domain.evidence.deletion import (
    hold_value_changed,
    is_held,
    keys_to_delete,
    requested_keys,
)
from forensic_checkpoint.domain.readiness import NodeNotReady, capture_blocker
from forensic_checkpoint.errors import AgentError, ClusterError

#: ForensicNode lookups are shared by all daemons of a node for this long.
_NODE_TTL = 2.0
_RECHECK = "recheck"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CheckpointController:
    def __init__(
        self,
        config: OperatorConfig,
        *,
        checkpoints: CheckpointStatusWriter,
        forensic_nodes: ForensicNodeReader,
        pods: PodReader,
        agents: NodeAgents,
        clock: Callable[[], datetime] = _utcnow,
        whoami: Callable[[], str] | None = None,
        admission: AlertAdmission | None = None,
    ) -> None:
        """``whoami`` returns this operator's own user name, which is also the alert
        receiver's: without it no ``Requested`` entry is recorded as alert provenance.
        ``admission`` holds alert captures to the receiver's concurrency cap (None: no cap)."""
        self._config = config
        self._checkpoints = checkpoints
        self._forensic_nodes = forensic_nodes
        self._pods = pods
        self._agents = agents
        self._clock = clock
        self._whoami = whoami
        self._identity = ""
        self._nodes: dict[str, tuple[float, ForensicNode | None]] = {}
        self._admission = admission

    # --- the capture (one task per object, .in_flight) ----------------------------------

    async def drive(
        self, body: Callable[[], Mapping[str, Any]], stopped: Stopped, logger: logging.Logger
    ) -> None:
        """Run one ForensicCheckpoint to Completed or Failed, then follow its exports; ``body()``
        is the object as the watch last saw it (:mod:`.in_flight` keeps it current)."""
        fcp = ForensicCheckpoint.model_validate(dict(body()))
        ref = reconcile.CheckpointRef.of(fcp.metadata)
        status = fcp.status or ForensicCheckpointStatus()
        admission = self._admission if is_alert_capture(fcp) else None
        key = f"{ref.namespace}/{ref.name}"
        try:
            if admission is not None:
                admitted = await take_slot(
                    admission, key, fcp, stopped, queued=self._queued(body, ref, logger)
                )
                if admitted is None:
                    return
                status = admitted
            await self._run(body, ref, status, fcp=fcp, stopped=stopped, logger=logger)
        finally:
            if admission is not None:
                admission.release(key)

    def _queued(
        self,
        body: Callable[[], Mapping[str, Any]],
        ref: reconcile.CheckpointRef,
        logger: logging.Logger,
    ) -> Callable[[ForensicCheckpointStatus, int], Awaitable[ForensicCheckpointStatus]]:
        """How an alert capture that waits for a slot says so: phase Queued and an Event."""

        async def write(old: ForensicCheckpointStatus, position: int) -> ForensicCheckpointStatus:
            cap = self._admission.cap if self._admission is not None else 0
            now = self._clock()
            new = alert_admission.queued(old, cap=cap, now=now)
            new.observed_generation = ref.generation
            new.conditions = conditions(new, generation=ref.generation, now=now)
            if new != old:
                write_status = self._checkpoints.write_status
                await asyncio.to_thread(write_status, ref.namespace, ref.name, new)
                message = f"{new.message} (position {position})"
                _post(body(), checkpoint_events.Event("Normal", "Queued", message))
                logger.info("Queued: %s", message)
            return new

        return write

    async def _run(
        self,
        body: Callable[[], Mapping[str, Any]],
        ref: reconcile.CheckpointRef,
        status: ForensicCheckpointStatus,
        *,
        fcp: ForensicCheckpoint,
        stopped: Stopped,
        logger: logging.Logger,
    ) -> None:
        key = f"{ref.namespace}/{ref.name}"
        admission = self._admission if is_alert_capture(fcp) else None
        while not stopped and finished.needs_daemon(status, self._clock()):
            current = body()  # the watch keeps it current
            metadata = dict(current.get("metadata") or {})
            ref = dataclasses.replace(ref, held=is_held(metadata))
            try:
                new = await self.step(ref, fcp.spec, status, metadata=metadata)
            except ClusterError as exc:
                # The API server is the operator's lifeline; wait for it, do not fail the CR.
                logger.warning("cannot reach the API server: %s", exc.message)
                await stopped.wait(5 * self._config.poll_interval)
                continue
            moved = _phases(status) != _phases(new)
            status = await self.record(current, ref, status, new, logger)
            if admission is not None and admission_slot(status) is Slot.DONE:
                admission.release(key)  # past its kubelet calls: the next alert's turn
            if not finished.needs_daemon(status, self._clock()):
                break  # a kept archive is followed with its node's others (.kept_archives)
            if moved and not status.phase.terminal:
                # Targets, a request, a call's end or the archive just written: the next pass
                # at once (at most five per container; status requests wait in the agent).
                continue
            await stopped.wait(self._interval(status))

    async def record(
        self,
        body: Mapping[str, Any],
        ref: reconcile.CheckpointRef,
        status: ForensicCheckpointStatus,
        new: ForensicCheckpointStatus,
        logger: logging.Logger,
    ) -> ForensicCheckpointStatus:
        """Write ``new`` if it differs from ``status``, with its Events and metrics; the status
        now in force."""
        if new == status:
            return status
        await asyncio.to_thread(
            self._checkpoints.write_status,
            ref.namespace,
            ref.name,
            new,
            with_custody=new.custody != status.custody,
        )
        for event in checkpoint_events.transition_events(status, new):
            _post(body, event)
            # The same fact in the log, which outlives the Event's one-hour TTL.
            level = logging.WARNING if event.type == "Warning" else logging.INFO
            logger.log(level, "%s: %s", event.reason, event.message)
        metadata = body.get("metadata") or {}
        metrics.observe_transition(status, new, created=metadata.get("creationTimestamp"))
        return new

    async def step(
        self,
        ref: reconcile.CheckpointRef,
        spec: ForensicCheckpointSpec,
        status: ForensicCheckpointStatus,
        *,
        metadata: Mapping[str, Any],
    ) -> ForensicCheckpointStatus:
        """One reconcile pass: gather facts, apply the domain's decisions, and record what
        happened to the evidence in the custody chain."""
        now = self._clock()
        receiver = await self._alert_receiver(spec) if not status.custody else ""
        status = checkpoint_custody.record_request(
            status, subject=ref.uid, metadata=metadata, spec=spec, at=now, receiver=receiver
        )
        facts: dict[str, list[CustodyFact]] = {}
        if status.phase.terminal:
            new = await self._follow_exports(status, facts)
        else:
            new = await self._decide(ref, spec, status, now, facts)
        # A re-capture's entry first: it opens the new job, whose facts start again at 0.
        new = checkpoint_custody.record_recaptures(new, subject=ref.uid, at=now)
        return checkpoint_custody.record_facts(new, facts, subject=ref.uid)

    async def _alert_receiver(self, spec: ForensicCheckpointSpec) -> str:
        """The alert receiver's user name, asked once and only for an alert reference to check
        (a ``ClusterError`` is retried by its capture task like any other API outage)."""
        if spec.reason is None or spec.reason.alert is None or self._whoami is None:
            return ""
        if not self._identity:
            self._identity = await asyncio.to_thread(self._whoami)
        return self._identity

    def _interval(self, status: ForensicCheckpointStatus) -> float:
        """Seconds to the next pass: a capture is polled closely, an export (seconds to minutes,
        with backed-off retries) or a late archive more slowly."""
        if not status.phase.terminal:
            return self._config.poll_interval
        return 5 * self._config.poll_interval

    async def _follow_exports(
        self, status: ForensicCheckpointStatus, facts: dict[str, list[CustodyFact]]
    ) -> ForensicCheckpointStatus:
        """A finished capture: the export sub-status, whether retention deleted the archive, a
        late archive of a failed capture, and the agent's new custody facts (Captured for a late
        archive, Exported, Verified, Deleted). Phase and conditions stay as they are."""
        agent = await self._agent(status.node_name, self._clock())
        if isinstance(agent, AgentUnavailable):
            return status.model_copy(deep=True)  # the agent keeps its queue on disk; ask later
        now = self._clock()
        captures: dict[str, CaptureStatus] = {}
        for container in status.containers:
            if not finished.following(container, now):
                continue
            try:
                capture = await self._agents.status(agent, container.capture_key)
            except AgentError:
                continue
            if capture is not None:
                captures[container.name] = capture
        new, found = finished.fold_follow_ups(status, captures, now)
        facts.update(found)
        return new

    async def _resolve(
        self,
        ref: reconcile.CheckpointRef,
        spec: ForensicCheckpointSpec,
        status: ForensicCheckpointStatus,
        now: datetime,
    ) -> ForensicCheckpointStatus:
        """The first pass: the pod's node and the containers to capture, or why not."""
        problem = reconcile.check_spec(spec)
        if problem is not None:
            return reconcile.record_targets(status, problem, ref=ref, now=now)
        pod = await asyncio.to_thread(self._pods.get_facts, ref.namespace, spec.pod_name)
        decision = resolve_targets(
            pod, namespace=ref.namespace, pod_name=spec.pod_name, requested=spec.containers
        )
        # Recorded (and written) before the agent is asked: the capture keys must survive
        # a restart that happens right after the request.
        return reconcile.record_targets(status, decision, ref=ref, now=now)

    async def _decide(
        self,
        ref: reconcile.CheckpointRef,
        spec: ForensicCheckpointSpec,
        status: ForensicCheckpointStatus,
        now: datetime,
        facts: dict[str, list[CustodyFact]],
    ) -> ForensicCheckpointStatus:
        if not status.containers:
            return await self._resolve(ref, spec, status, now)
        node = await self._node(status.node_name)
        agent = usable_agent(
            agent_facts(node) if node is not None else None, node_name=status.node_name, now=now
        )
        if isinstance(agent, AgentUnavailable):
            if stop_waiting_for_agent(
                status,
                spec,
                now=now,
                agent_wait=self._config.agent_wait,
                capture_grace=self._config.capture_grace,
            ):
                return reconcile.fail(
                    status, reason=agent.reason, message=agent.message, ref=ref, now=now
                )
            return reconcile.agent_waiting(status, message=agent.message, ref=ref, now=now)

        if node is not None and not any(c.requested_at for c in status.containers):
            # The agent's readiness round already knows the kubelet would refuse: say why now,
            # with the fix, instead of freezing nothing and failing later. Failing is final, so
            # the verdict is taken from a fresh read, not from the shared cache.
            blocker = await self._confirmed_blocker(node, now)
            if blocker == _RECHECK:
                return status  # the node changed under the cache; decide on the next pass
            if isinstance(blocker, NodeNotReady):
                return reconcile.node_not_ready(status, blocker, ref=ref, now=now)

        new = status.model_copy(deep=True)
        new.agent_endpoint = agent.endpoint
        new.containers = [
            await self._advance(ref, spec, container, agent, now, facts=facts)
            for container in new.containers
        ]
        return reconcile.aggregate(new, ref=ref, now=now)

    async def _advance(
        self,
        ref: reconcile.CheckpointRef,
        spec: ForensicCheckpointSpec,
        container: ContainerStatus,
        agent: AgentTarget,
        now: datetime,
        *,
        facts: dict[str, list[CustodyFact]],
    ) -> ContainerStatus:
        if container.phase in (ContainerCapturePhase.COMPLETED, ContainerCapturePhase.FAILED):
            return container
        try:
            capture: CaptureStatus | None = None
            if container.requested_at is not None:
                # The agent answers when the job moves on or has a new fact (Captured).
                wait_while = _WAIT_WHILE.get(container.phase, ())
                capture = await self._agents.status(
                    agent,
                    container.capture_key,
                    wait_while=wait_while,
                    wait_seconds=self._config.capture_wait if wait_while else 0.0,
                )
            if capture is None:
                # First request, or an agent that lost the job: the key makes this idempotent.
                capture = await self._agents.submit(
                    agent, reconcile.capture_request(ref, spec, container)
                )
                container = reconcile.mark_requested(container, now=now)
            facts[container.name] = list(capture.custody_events)
            report_url = f"{agent.endpoint}/v1/captures/{container.capture_key}/report"
            return reconcile.apply_capture_status(
                container, capture, report_url=report_url, now=now
            )
        except AgentError as exc:
            return after_agent_error(
                container,
                spec,
                reason=exc.reason,
                message=exc.message,
                now=now,
                capture_grace=self._config.capture_grace,
            )

    async def _confirmed_blocker(
        self, node: ForensicNode, now: datetime
    ) -> NodeNotReady | str | None:
        """The node's readiness blocker, confirmed on a fresh read (failing is final; the cache
        may predate a restarted agent), or ``_RECHECK`` when it has no usable agent any more."""
        if capture_blocker(node) is None:
            return None
        name = str(node.metadata.get("name", ""))
        fresh = await self._node(name, fresh=True)
        facts = agent_facts(fresh) if fresh is not None else None
        if fresh is None or isinstance(
            usable_agent(facts, node_name=name, now=now), AgentUnavailable
        ):
            return _RECHECK
        return capture_blocker(fresh)

    async def _node(self, node_name: str, *, fresh: bool = False) -> ForensicNode | None:
        """The node's ForensicNode, shared by all daemons of that node for a moment."""
        cached = self._nodes.get(node_name)
        if not fresh and cached is not None and time.monotonic() - cached[0] < _NODE_TTL:
            return cached[1]
        node = await asyncio.to_thread(self._forensic_nodes.get, node_name)
        self._nodes[node_name] = (time.monotonic(), node)
        return node

    async def _agent(self, node_name: str, now: datetime) -> AgentTarget | AgentUnavailable:
        node = await self._node(node_name)
        return usable_agent(
            agent_facts(node) if node is not None else None, node_name=node_name, now=now
        )

    # --- legal hold ---------------------------------------------------------------------

    async def sync_hold(self, body: kopf.Body, old: Any, new: Any, logger: logging.Logger) -> None:
        """Tell the agent when the hold label/annotation changes, so its retention keeps (or may
        again delete) the archive. A capture requested later carries the hold in its request."""
        # ``old``/``new`` are the watched field (labels or annotations); the hold in force is
        # either of them (``is_held`` of the whole metadata).
        if not hold_value_changed(old, new):
            return
        held = is_held(body.metadata)
        fcp = ForensicCheckpoint.model_validate(dict(body))
        keys = requested_keys(fcp.status)
        if fcp.status is None or not keys:
            return
        agent = await self._agent(fcp.status.node_name, self._clock())
        if isinstance(agent, AgentUnavailable):
            raise kopf.TemporaryError(f"cannot change the hold: {agent.message}", delay=10)
        try:
            for key in keys:
                await self._agents.hold(agent, key, hold=held)
        except AgentError as exc:
            raise kopf.TemporaryError(f"cannot change the hold: {exc.message}", delay=10) from exc
        logger.info("hold %s on %s", "set" if held else "lifted", fcp.status.node_name)
        _post(body, checkpoint_events.hold_changed(held, fcp.status.node_name))

    # --- deletion -----------------------------------------------------------------------

    async def clean_up(self, body: kopf.Body, retry: int, logger: logging.Logger) -> None:
        """Delete the node's archives and reports of a deleted ForensicCheckpoint."""
        if self._admission is not None:  # a deleted alert capture leaves the queue or its slot
            self._admission.release(f"{body.metadata.namespace}/{body.metadata.name}")
        if is_held(body.metadata):
            _post(body, checkpoint_events.archive_held())
            return
        fcp = ForensicCheckpoint.model_validate(dict(body))
        keys = keys_to_delete(fcp.status)
        if not keys or fcp.status is None:
            return
        agent = await self._agent(fcp.status.node_name, self._clock())
        if isinstance(agent, AgentUnavailable) and fcp.status.agent_endpoint:
            # A stale heartbeat: the agent may still answer where it last listened.
            agent = AgentTarget(fcp.status.node_name, fcp.status.agent_endpoint)
        try:
            if isinstance(agent, AgentUnavailable):
                raise AgentError(agent.message, reason=agent.reason)
            deleted: list[str] = []
            in_flight = 0
            for key in keys:
                result = await self._agents.delete(agent, key)
                deleted.extend(result.deleted if result else [])
                in_flight += bool(result and result.pending)
        except AgentError as exc:
            if retry < self._config.delete_retries:
                raise kopf.TemporaryError(
                    f"cannot delete the archives: {exc.message}", delay=5
                ) from exc
            _post(body, checkpoint_events.archive_not_deleted(fcp.status.node_name, exc.message))
            return
        logger.info("deleted %d file(s) on %s", len(deleted), fcp.status.node_name)
        node = fcp.status.node_name
        _post(body, checkpoint_events.archive_deleted(len(deleted), node, in_flight))


#: The agent's job states of a container at its kubelet call (ContainerCapturePhase.CAPTURING).
_WAIT_WHILE = {  # a container's phase -> the job states its status request waits out
    ContainerCapturePhase.CAPTURING: (CaptureState.QUEUED, CaptureState.CAPTURING),
    ContainerCapturePhase.ANALYZING: (CaptureState.ANALYZING,),
}


def _phases(status: ForensicCheckpointStatus) -> list[tuple[str, ContainerCapturePhase, bool]]:
    # A newly known archive is news too: the next pass at once waits for the analysis's end.
    return [(c.name, c.phase, c.archive is not None) for c in status.containers]


def _post(body: Mapping[str, Any], event: checkpoint_events.Event) -> None:
    # A kopf Body, or a plain object reference (apiVersion, kind, metadata) from .kept_archives.
    kopf.event(cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message)
