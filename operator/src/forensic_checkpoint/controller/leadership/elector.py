"""Campaign for the operator's Lease, renew it while acting, exit the process when it is lost.

Crash-only, as controller-runtime's managers: a replica that cannot renew within the renew
deadline, or that sees another holder, exits at once (``os._exit``, no clean-up that could
write anything more); its pod restarts as a standby. The renew deadline is shorter than the
lease duration, so the old leader has stopped before a standby may take the Lease over. A clean
stop (SIGTERM, a rolling update) releases the Lease so that a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import NoReturn, Protocol, TypeVar

from forensic_checkpoint.controller.metrics import LEADER
from forensic_checkpoint.domain.leadership.lease import (
    LeaseRecord,
    LeaseTimings,
    Verdict,
    claimed,
    released,
    verdict,
)
from forensic_checkpoint.errors import ClusterError

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class LeaseStore(Protocol):
    """What ``k8s.leases.Leases`` offers."""

    namespace: str

    def get(self, name: str) -> LeaseRecord | None: ...
    def create(self, name: str, record: LeaseRecord) -> LeaseRecord: ...
    def update(self, name: str, record: LeaseRecord) -> LeaseRecord: ...


def _exit_now(reason: str) -> NoReturn:
    log.error("leadership lost (%s): exiting so that this pod restarts as a standby", reason)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(1)


class LeaderElector:
    def __init__(
        self,
        leases: LeaseStore,
        name: str,
        identity: str,
        timings: LeaseTimings,
        *,
        on_lost: Callable[[str], None] = _exit_now,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        timings.validate()
        self.leases, self.name, self.identity, self.timings = leases, name, identity, timings
        self._on_lost, self._clock = on_lost, clock
        self._observed: LeaseRecord | None = None
        self._observed_at = clock()
        self.leading = False
        self._holding: asyncio.Task[None] | None = None
        # Threads of its own: in a burst the controller's API calls fill asyncio's default pool,
        # and a renewal queued behind them would miss the deadline (the leader would exit).
        self._threads = ThreadPoolExecutor(2, thread_name_prefix="lease")
        #: The health server of this replica (``health.serve_health``), kept alive with it.
        self.health: object | None = None

    async def acquire(self, stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait until this replica holds the Lease (``True``), or ``stop()`` (``False``); then
        renew it in the background until it is lost or released."""
        waiting_on: str | None = None
        while not stop():
            if await self._try():
                break
            holder = self._observed.holder if self._observed else None
            if holder != waiting_on:
                log.info("standing by: the Lease %s is held by %s", self._where, holder)
                waiting_on = holder
            await asyncio.sleep(self.timings.retry_period)
        else:
            return False
        log.info("leading: %s holds the Lease %s", self.identity, self._where)
        self.leading = True
        LEADER.set(1)
        self._holding = asyncio.create_task(self._hold())
        return True

    async def release(self) -> None:
        """Stop renewing and hand the Lease over (a clean stop only)."""
        if self._holding is not None:
            self._holding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._holding
        if not self.leading or self._observed is None or self._observed.holder != self.identity:
            return
        self.leading = False
        LEADER.set(0)
        with contextlib.suppress(ClusterError):
            await self._call(self.leases.update, self.name, released(self._observed, _now()))
            log.info("released the Lease %s", self._where)

    async def _call(self, fn: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    @property
    def _where(self) -> str:
        return f"{self.leases.namespace}/{self.name}"

    async def _hold(self) -> None:
        renewed = self._clock()
        while True:
            await asyncio.sleep(self.timings.retry_period)
            left = renewed + self.timings.renew_deadline - self._clock()
            try:
                ok = await asyncio.wait_for(self._try(), timeout=max(0.01, left))
            except TimeoutError:
                log.warning("renewing the Lease %s timed out", self._where)
                ok = False
            if ok:
                renewed = self._clock()
                continue
            holder = self._observed.holder if self._observed else None
            if holder not in (None, self.identity):
                return self._lost(f"the Lease is now held by {holder}")
            if self._clock() - renewed >= self.timings.renew_deadline:
                return self._lost(f"no renewal for {self.timings.renew_deadline:g} s")

    def _lost(self, reason: str) -> None:
        self.leading = False
        LEADER.set(0)
        self._on_lost(reason)

    async def _try(self) -> bool:
        """One round of client-go's tryAcquireOrRenew."""
        if self.leading and self._observed is not None and self._observed.holder == self.identity:
            return await self._renew(self._observed)
        try:
            record = await self._call(self.leases.get, self.name)
        except ClusterError as exc:
            log.warning("cannot read the Lease %s: %s", self._where, exc.message)
            return False
        now = self._clock()
        if record is None or not record.same_term(self._observed):
            self._observed, self._observed_at = record, now
        if verdict(record, self.identity, unchanged_for=now - self._observed_at) is Verdict.WAIT:
            return False
        wanted = claimed(record, self.identity, _now(), self.timings)
        write = self.leases.create if record is None else self.leases.update
        try:
            written = await self._call(write, self.name, wanted)
        except ClusterError as exc:  # a conflict: another replica wrote first
            log.info("cannot write the Lease %s: %s", self._where, exc.message)
            return False
        self._observed, self._observed_at = written, self._clock()
        return True

    async def _renew(self, mine: LeaseRecord) -> bool:
        """client-go's fast path: the leader renews from the record it wrote last, without a
        GET, halving its requests at rest. The write carries that record's resourceVersion, so
        it fails if anyone wrote since; the next round then reads the Lease first."""
        wanted = claimed(mine, self.identity, _now(), self.timings)
        try:
            written = await self._call(self.leases.update, self.name, wanted)
        except ClusterError as exc:
            log.info("cannot renew the Lease %s: %s", self._where, exc.message)
            self._observed = None  # read it again: someone may hold it now
            return False
        self._observed, self._observed_at = written, self._clock()
        return True


def _now() -> datetime:
    return datetime.now(UTC)
