"""Admission of alert captures under the receiver's concurrency cap, in acceptance order.

The receiver creates every accepted alert's ForensicCheckpoint at once (``Capture`` under the
cap, ``Queued`` over it). Before a capture's first request to its agent, its handler asks
:meth:`AlertAdmission.enter`: admitted at once while fewer than ``cap`` alert captures hold a
slot, else it waits (phase Queued) until :meth:`release` frees one. A release wakes the next
waiter directly, with no timer or poll in between.

The state is rebuilt from the API server on first use (one list, ``seed``): the captures that
hold a slot, and the waiting ones in their order, including those whose handler has not
started yet, so that after an operator restart the queue resumes in the same order.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint, ForensicCheckpointStatus
from forensic_checkpoint.domain.alerts.admission import Slot, admission_order, slot
from forensic_checkpoint.k8s.alert_captures import list_alert_captures
from forensic_checkpoint.k8s.client import ApiClient

log = logging.getLogger(__name__)

Order = tuple[str, str, str]


@dataclass(frozen=True)
class SlotFact:
    """One alert capture as the seed's list saw it (``key`` is namespace/name)."""

    key: str
    order: Order
    slot: Slot


class AlertAdmission:
    def __init__(self, cap: int, seed: Callable[[], Awaitable[Iterable[SlotFact]]]) -> None:
        self.cap = cap
        self._seed = seed
        self._seeded = False
        self._seeding: asyncio.Future[None] | None = None
        self._holding: set[str] = set()
        #: Waiting captures, sorted by order.
        self._queue: list[tuple[Order, str]] = []
        self._admitted: dict[str, asyncio.Event] = {}

    async def enter(self, key: str, order: Order) -> bool:
        """Take a slot now (True), or join the queue (False: :meth:`wait` for the turn)."""
        await self._ensure_seeded()
        if key in self._holding:
            return True
        if all(k != key for _, k in self._queue):
            bisect.insort(self._queue, (order, key))
        self._admitted.setdefault(key, asyncio.Event())
        self._admit()
        return key in self._holding

    async def wait(self, key: str) -> None:
        """Until ``key`` holds a slot (after :meth:`enter` returned False; it may have been
        admitted meanwhile, e.g. while its Queued status was written)."""
        if key in self._holding:
            return
        await self._admitted.setdefault(key, asyncio.Event()).wait()

    def hold(self, key: str) -> None:
        """``key`` holds a slot already (its status says so: admitted before a restart)."""
        self._drop(key)
        self._holding.add(key)

    def release(self, key: str) -> None:
        """``key`` is past its kubelet calls, or gone: its slot (or place) goes to the next."""
        if key in self._holding or any(k == key for _, k in self._queue):
            self._drop(key)
            self._holding.discard(key)
            self._admit()

    def position(self, key: str) -> int:
        """1 for the next to be admitted; 0 when not waiting."""
        for i, (_, k) in enumerate(self._queue):
            if k == key:
                return i + 1
        return 0

    @property
    def holding(self) -> int:
        return len(self._holding)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def _drop(self, key: str) -> None:
        self._queue = [(o, k) for o, k in self._queue if k != key]
        self._admitted.pop(key, None)

    def _admit(self) -> None:
        while self._queue and len(self._holding) < self.cap:
            _, key = self._queue.pop(0)
            self._holding.add(key)
            event = self._admitted.pop(key, None)
            if event is not None:
                event.set()
            log.debug("alert capture %s admitted (%d/%d)", key, len(self._holding), self.cap)

    async def _ensure_seeded(self) -> None:
        """The first caller lists; concurrent callers wait for that list; a failed list (the
        API server is away) is retried by the next caller."""
        if self._seeded:
            return
        if self._seeding is None or self._seeding.done():
            self._seeding = asyncio.ensure_future(self._load())
        seeding = self._seeding
        try:
            await asyncio.shield(seeding)
        finally:
            if seeding.done() and (seeding.cancelled() or seeding.exception() is not None):
                self._seeding = None

    async def _load(self) -> None:
        facts = list(await self._seed())
        if self._seeded:
            return
        for fact in facts:
            if fact.slot is Slot.HOLDING:
                self._holding.add(fact.key)
        waiting = {k for _, k in self._queue}
        for fact in facts:
            if fact.slot is Slot.WAITING and fact.key not in self._holding | waiting:
                bisect.insort(self._queue, (fact.order, fact.key))
        self._seeded = True
        log.info(
            "alert admission: %d capture(s) hold a slot, %d wait (cap %d)",
            len(self._holding),
            len(self._queue),
            self.cap,
        )
        self._admit()


def seed_from(api: ApiClient) -> Callable[[], Awaitable[list[SlotFact]]]:
    """The seed: every alert capture in the cluster, as :class:`SlotFact` values."""

    async def seed() -> list[SlotFact]:
        captures = await asyncio.to_thread(list_alert_captures, api)
        return [
            SlotFact(
                key=f"{fcp.metadata.get('namespace', '')}/{fcp.metadata.get('name', '')}",
                order=admission_order(fcp),
                slot=slot(fcp.status),
            )
            for fcp in captures
        ]

    return seed


class _Stopped(Protocol):
    """The capture task's stop flag: awaiting ``wait()`` returns once the task is to stop."""

    def wait(self) -> Awaitable[object]: ...


async def take_slot(
    admission: AlertAdmission,
    key: str,
    fcp: ForensicCheckpoint,
    stopped: _Stopped,
    *,
    queued: Callable[[ForensicCheckpointStatus, int], Awaitable[ForensicCheckpointStatus]],
) -> ForensicCheckpointStatus | None:
    """An alert capture's slot: the status to go on with once it holds one (``queued`` writes
    phase Queued while it waits), or None when the task stopped first."""
    status = fcp.status or ForensicCheckpointStatus()
    place = slot(fcp.status)
    if place is Slot.HOLDING:
        admission.hold(key)  # admitted before a restart: its capture is under way
    if place is not Slot.WAITING or await admission.enter(key, admission_order(fcp)):
        return status
    status = await queued(status, admission.position(key))
    turn = asyncio.ensure_future(admission.wait(key))
    stop = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({turn, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        turn.cancel()
        stop.cancel()
    if not turn.done() or turn.cancelled():
        return None
    log.info("alert capture %s admitted", key)
    return status
