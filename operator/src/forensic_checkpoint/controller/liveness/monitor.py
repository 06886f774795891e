"""A periodic pass over the ForensicNodes that marks ``Ready`` Unknown where the agent's
heartbeat is older than the grace period (``--agent-heartbeat-grace``, 40 s).

A plain asyncio task, not a kopf timer: kopf would put a finalizer on every ForensicNode (and
need to patch them), and a ForensicNode must go with its Node even when no operator runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from forensic_checkpoint.api.conditions import Condition
from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.domain.readiness.liveness import DEFAULT_HEARTBEAT_GRACE, stale_conditions
from forensic_checkpoint.errors import ClusterError, ConflictError, NotFoundError

log = logging.getLogger(__name__)


class ForensicNodeConditions(Protocol):
    """``k8s.nodes.ForensicNodes``: list them, replace one's conditions at a resourceVersion."""

    def list(self) -> list[ForensicNode]: ...

    def set_conditions(
        self, name: str, conditions: Sequence[Condition], *, resource_version: str
    ) -> None: ...


class NodeLiveness:
    def __init__(
        self,
        forensic_nodes: ForensicNodeConditions,
        *,
        grace: timedelta = DEFAULT_HEARTBEAT_GRACE,
        interval: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._nodes = forensic_nodes
        self.grace = grace
        #: A quarter of the grace by default: Unknown at most grace + interval after the beat.
        self.interval = interval if interval is not None else grace.total_seconds() / 4
        self._clock = clock

    def check(self) -> list[str]:
        """One pass; the names of the ForensicNodes marked Unknown now."""
        marked = []
        now = self._clock()
        for node in self._nodes.list():
            conditions = stale_conditions(node, now=now, grace=self.grace)
            name = str(node.metadata.get("name", ""))
            if conditions is None or not name:
                continue
            try:
                self._nodes.set_conditions(
                    name, conditions, resource_version=str(node.metadata.get("resourceVersion"))
                )
            except (ConflictError, NotFoundError):
                continue  # the agent wrote meanwhile (its word wins), or the node is gone
            log.warning("ForensicNode %s: the agent stopped heartbeating; Ready Unknown", name)
            marked.append(name)
        return marked

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.check)
            except ClusterError as exc:
                log.warning("heartbeat check of the ForensicNodes failed: %s", exc.message)
            await asyncio.sleep(self.interval)
