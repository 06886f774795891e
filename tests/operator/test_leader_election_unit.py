"""The operator's leader election on an in-memory Lease (client-go's algorithm): a standby
waits out a live Lease by its own clock, a holder that sees another holder or cannot renew
gives up, a clean stop hands the Lease over."""

from __future__ import annotations

import asyncio
import collections
import dataclasses

import pytest

from forensic_checkpoint.controller.leadership.elector import LeaderElector
from forensic_checkpoint.domain.leadership.lease import LeaseRecord, LeaseTimings
from forensic_checkpoint.errors import ClusterError, ConflictError

# Real timers of a lease (about a second each).
pytestmark = pytest.mark.slow

FAST = LeaseTimings(lease_duration=0.6, renew_deadline=0.4, retry_period=0.05)


class MemoryLeases:
    namespace = "forensic-checkpoint"

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.cut = False  # the API server refuses every call
        self.calls: collections.Counter[str] = collections.Counter()

    def _check(self, call: str) -> None:
        self.calls[call] += 1
        if self.cut:
            raise ClusterError("forbidden", status_code=403)

    def get(self, name: str) -> LeaseRecord | None:
        self._check("get")
        return self.record

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.record = dataclasses.replace(record, resource_version=str(self.version))
        return self.record

    def create(self, name: str, record: LeaseRecord) -> LeaseRecord:
        self._check("create")
        if self.record is not None:
            raise ConflictError("exists", status_code=409)
        return self._store(record)

    def update(self, name: str, record: LeaseRecord) -> LeaseRecord:
        self._check("update")
        assert self.record is not None
        if record.resource_version != self.record.resource_version:
            raise ConflictError("changed", status_code=409)
        return self._store(record)


def _elector(leases: MemoryLeases, who: str, lost: list[str]) -> LeaderElector:
    return LeaderElector(leases, "op", who, FAST, on_lost=lost.append)


async def _test_one_leads_the_other_waits_out_the_lease_after_the_leader_dies() -> None:
    leases, lost = MemoryLeases(), list[str]()
    first, second = _elector(leases, "a", lost), _elector(leases, "b", lost)
    assert await first.acquire()
    standby = asyncio.create_task(second.acquire())
    await asyncio.sleep(1.0)  # longer than the lease: the leader renews it
    assert not standby.done() and leases.record is not None and leases.record.holder == "a"
    assert first._holding is not None
    first._holding.cancel()  # the leader dies (SIGKILL): no more renewals, no release
    loop = asyncio.get_running_loop()
    died = loop.time()
    assert await asyncio.wait_for(standby, 3)
    waited = loop.time() - died
    assert FAST.lease_duration - FAST.retry_period <= waited <= FAST.lease_duration + 0.5
    assert leases.record.holder == "b" and leases.record.transitions == 1
    await second.release()
    assert lost == []


async def _test_a_holder_that_sees_another_holder_gives_up_at_once() -> None:
    leases, lost = MemoryLeases(), list[str]()
    elector = _elector(leases, "a", lost)
    assert await elector.acquire()
    assert leases.record is not None
    leases._store(dataclasses.replace(leases.record, holder="intruder"))
    # The renewal from its own record conflicts; the next round reads the intruder's.
    await asyncio.sleep(3 * FAST.retry_period + 0.05)
    assert lost and "intruder" in lost[0] and not elector.leading


async def _test_a_holder_that_cannot_renew_gives_up_before_the_lease_expires() -> None:
    leases, lost = MemoryLeases(), list[str]()
    elector = _elector(leases, "a", lost)
    assert await elector.acquire()
    leases.cut = True
    loop = asyncio.get_running_loop()
    cut = loop.time()
    while not lost and loop.time() - cut < 2:
        await asyncio.sleep(0.01)
    assert lost and "no renewal" in lost[0]
    assert loop.time() - cut < FAST.lease_duration  # before anyone else may take it


async def _test_a_clean_stop_hands_the_lease_over_at_once() -> None:
    leases, lost = MemoryLeases(), list[str]()
    first, second = _elector(leases, "a", lost), _elector(leases, "b", lost)
    assert await first.acquire()
    standby = asyncio.create_task(second.acquire())
    await asyncio.sleep(0.1)
    await first.release()
    assert await asyncio.wait_for(standby, 3 * FAST.retry_period + 0.2)
    await second.release()


async def _test_the_leader_renews_without_reading_the_lease_first() -> None:
    leases, lost = MemoryLeases(), list[str]()
    elector = _elector(leases, "a", lost)
    assert await elector.acquire()
    leases.calls.clear()
    await asyncio.sleep(10 * FAST.retry_period + 0.02)
    await elector.release()
    # One request per renewal, as client-go's leader makes: a PUT from the record it wrote.
    assert leases.calls["get"] == 0 and leases.calls["update"] >= 8, leases.calls
    assert lost == [] and leases.record is not None and leases.record.holder is None


def test_the_leader_renews_without_reading_the_lease_first() -> None:
    asyncio.run(_test_the_leader_renews_without_reading_the_lease_first())


def test_the_timings_must_leave_the_leader_time_to_stop() -> None:
    with pytest.raises(ValueError, match="renew deadline < lease duration"):
        LeaseTimings(lease_duration=10, renew_deadline=10, retry_period=2).validate()


def test_one_leads_the_other_waits_out_the_lease_after_the_leader_dies() -> None:
    asyncio.run(_test_one_leads_the_other_waits_out_the_lease_after_the_leader_dies())


def test_a_holder_that_sees_another_holder_gives_up_at_once() -> None:
    asyncio.run(_test_a_holder_that_sees_another_holder_gives_up_at_once())


def test_a_holder_that_cannot_renew_gives_up_before_the_lease_expires() -> None:
    asyncio.run(_test_a_holder_that_cannot_renew_gives_up_before_the_lease_expires())


def test_a_clean_stop_hands_the_lease_over_at_once() -> None:
    asyncio.run(_test_a_clean_stop_hands_the_lease_over_at_once())
