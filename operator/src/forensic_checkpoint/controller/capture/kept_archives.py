"""Following the kept archives of finished ForensicCheckpoints: one call per node, not one task
per object.

A Completed capture's archive may stay on its node for months, and retention may delete it any
day; the operator must then append the agent's ``Deleted`` fact to the object's custody chain.
The object's capture task (:mod:`.in_flight`) ends once only that is left
(``finished.needs_daemon``; after a restart, none is started). Instead, an index fed by the
watch (kopf's ``on.event``, so rebuilt from the first listing after a restart) holds a few
strings per kept archive, and every ``--archive-poll-interval`` seconds one sweep asks each
node's agent once for the digest of all its jobs (``GET /v1/captures``). Only a job whose digest
has news (a new custody fact, a deleted archive) is read in full, from the same agent, and only
then is the object read and its status written, through the same fold and write as the task
(:meth:`.checkpoints.CheckpointController.record`).

The trust is the capture task's: the agent is the one the node's ForensicNode names, reached
through
:class:`~.agent_client.AgentClient` (its certificate must be that node's, the token is for that
node's audience), a list naming another node is refused, and a key is only ever looked up at the
node the object's status names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from forensic_checkpoint.api.agent import CaptureStatus, digest_of
from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint, ForensicCheckpointStatus
from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.controller import metrics
from forensic_checkpoint.controller.capture.checkpoints import CheckpointController
from forensic_checkpoint.controller.capture.ports import (
    CheckpointReader,
    ForensicNodeLister,
    KeptJobs,
)
from forensic_checkpoint.domain.capture import finished, reconcile
from forensic_checkpoint.domain.capture.agents import (
    AgentTarget,
    AgentUnavailable,
    agent_facts,
    usable_agent,
)
from forensic_checkpoint.domain.evidence import checkpoint_custody
from forensic_checkpoint.errors import AgentError, ClusterError

log = logging.getLogger(__name__)

#: Nodes asked at once in a sweep (each call is short; one slow agent must not hold up all).
DEFAULT_CONCURRENCY = 8
#: The first sweep after a start (the watch's first listing fills the index meanwhile): what
#: retention did while no operator ran is recorded within seconds of a restart.
FIRST_SWEEP_DELAY = 10.0


@dataclass(frozen=True)
class KeptCheckpoint:
    """What the index holds of one object: where it is, and its kept jobs."""

    namespace: str
    name: str
    uid: str
    node: str
    jobs: tuple[finished.KeptJob, ...]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KeptArchives:
    def __init__(
        self,
        controller: CheckpointController,
        *,
        checkpoints: CheckpointReader,
        forensic_nodes: ForensicNodeLister,
        agents: KeptJobs,
        interval: float,
        clock: Callable[[], datetime] = _utcnow,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self._controller = controller
        self._checkpoints = checkpoints
        self._nodes = forensic_nodes
        self._agents = agents
        self.interval = interval
        self._clock = clock
        self._concurrency = concurrency
        self._index: dict[str, KeptCheckpoint] = {}
        self._task: asyncio.Task[None] | None = None

    # --- the index (fed by the watch) ----------------------------------------------------

    def observe(self, body: Mapping[str, Any], event_type: str | None) -> None:
        """One watch event of a ForensicCheckpoint: index it if it has kept archives and no
        capture task of its own, drop it otherwise. Starts the sweeps on the first event, from
        kopf's handler context (so the sweep's Events are posted like the capture tasks')."""
        metadata = body.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        entry = None
        if event_type != "DELETED" and not metadata.get("deletionTimestamp"):
            entry = self._entry(body, metadata)
        if entry is None:
            self._index.pop(uid, None)
        else:
            self._index[uid] = entry
        metrics.KEPT_ARCHIVES.set(sum(len(e.jobs) for e in self._index.values()))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    def _entry(self, body: Mapping[str, Any], metadata: Mapping[str, Any]) -> KeptCheckpoint | None:
        raw = body.get("status")
        if not raw:
            return None
        try:
            status = ForensicCheckpointStatus.model_validate(raw)
        except ValidationError:
            return None
        jobs = finished.kept_jobs(status, self._clock())
        if not jobs or not status.node_name:
            return None
        return KeptCheckpoint(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            node=status.node_name,
            jobs=tuple(jobs),
        )

    def kept(self) -> list[KeptCheckpoint]:
        """The indexed objects (tests and metrics)."""
        return list(self._index.values())

    # --- the sweeps ----------------------------------------------------------------------

    async def run(self) -> None:
        await asyncio.sleep(min(self.interval, FIRST_SWEEP_DELAY))
        while True:
            started = time.monotonic()
            try:
                await self.sweep()
            except ClusterError as exc:
                log.warning("sweep of the kept archives: cannot reach the API server: %s", exc)
            except Exception:  # the sweeps must outlive one bad pass
                log.exception("sweep of the kept archives failed; next in %s s", self.interval)
            metrics.KEPT_SWEEP_SECONDS.observe(time.monotonic() - started)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep(self) -> int:
        """One pass over every node with kept archives; the number of objects updated."""
        by_node: dict[str, list[KeptCheckpoint]] = {}
        for entry in self._index.values():
            by_node.setdefault(entry.node, []).append(entry)
        if not by_node:
            return 0
        nodes = {
            str(n.metadata.get("name", "")): n
            for n in await asyncio.to_thread(self._nodes.list)  # one list, not one GET a node
        }
        gate = asyncio.Semaphore(self._concurrency)

        async def one(node_name: str, entries: list[KeptCheckpoint]) -> int:
            async with gate:
                return await self._sweep_node(node_name, nodes.get(node_name), entries)

        counts = await asyncio.gather(*(one(n, e) for n, e in by_node.items()))
        return sum(counts)

    async def _sweep_node(
        self, node_name: str, node: ForensicNode | None, entries: list[KeptCheckpoint]
    ) -> int:
        agent = usable_agent(
            agent_facts(node) if node is not None else None, node_name=node_name, now=self._clock()
        )
        if isinstance(agent, AgentUnavailable):
            return 0  # the agent keeps its facts on disk: the next sweep asks again
        try:
            news = await self._news(agent, entries)
        except AgentError as exc:
            log.warning("kept archives on %s: %s", node_name, exc.message)
            return 0
        updated = 0
        for entry, captures in news:
            try:
                updated += await self._update(entry, captures)
            except ClusterError as exc:
                log.warning("%s/%s: %s", entry.namespace, entry.name, exc.message)
        return updated

    async def _news(
        self, agent: AgentTarget, entries: list[KeptCheckpoint]
    ) -> list[tuple[KeptCheckpoint, dict[str, CaptureStatus]]]:
        """The entries whose jobs have news, with those jobs' full status."""
        listed = await self._agents.digests(agent)
        digests = {d.key: d for d in listed.items} if listed is not None else None
        found = []
        for entry in entries:
            captures: dict[str, CaptureStatus] = {}
            for job in entry.jobs:
                if digests is None:  # an older agent: job by job, as the daemons did
                    capture = await self._agents.status(agent, job.key)
                    if capture is not None and finished.has_news(job, digest_of(capture)):
                        captures[job.container] = capture
                    continue
                digest = digests.get(job.key)
                if digest is None or not finished.has_news(job, digest):
                    continue
                capture = await self._agents.status(agent, job.key)
                if capture is not None:
                    captures[job.container] = capture
            if captures:
                found.append((entry, captures))
        return found

    async def _update(self, entry: KeptCheckpoint, captures: dict[str, CaptureStatus]) -> int:
        """Fold the news into the object as it is now, and write it if it changed."""
        fcp = await asyncio.to_thread(self._checkpoints.get, entry.namespace, entry.name)
        if fcp is None or str(fcp.metadata.get("uid", "")) != entry.uid or fcp.status is None:
            return 0
        status = fcp.status
        if status.node_name != entry.node or finished.needs_daemon(status, self._clock()):
            return 0  # not what was indexed any more: its task (or the next sweep) has it
        new, facts = finished.fold_follow_ups(status, captures, self._clock())
        new = checkpoint_custody.record_facts(new, facts, subject=entry.uid)
        ref = reconcile.CheckpointRef(
            name=entry.name, namespace=entry.namespace, uid=entry.uid, generation=None
        )
        body = _reference(fcp)
        written = await self._controller.record(body, ref, status, new, log)
        return int(written is new)


def _reference(fcp: ForensicCheckpoint) -> dict[str, Any]:
    """The object reference an Event needs."""
    info = ForensicCheckpoint.crd
    return {
        "apiVersion": f"{info.group}/{info.version}",
        "kind": info.kind,
        "metadata": dict(fcp.metadata),
    }
