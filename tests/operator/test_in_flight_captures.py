"""In-flight captures run as the operator's own tasks, one per object that needs one, not as kopf
daemons: kopf keeps a copy of every object's body for any resource with a daemon handler
(10,000 kept archives, 10,000 bodies). The tasks keep the daemon's semantics: started by the
watch (its first listing after a restart too), retried after an error, stopped and awaited on
deletion and at shutdown, never started again by a late event once ended."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.controller import runner
from forensic_checkpoint.controller.capture import in_flight, wiring
from forensic_checkpoint.controller.capture.in_flight import InFlightCaptures
from forensic_checkpoint.controller.capture.ports import Stopped
from forensic_checkpoint.errors import AgentError

LOG = logging.getLogger(__name__)


def _body(uid: str, phase: str | None = None, **metadata: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "forensic-checkpoint.dev/v1alpha1",
        "kind": "ForensicCheckpoint",
        "metadata": {"name": f"fcp-{uid}", "namespace": "ns", "uid": uid, **metadata},
        "spec": {"podName": "web"},
    }
    if phase is not None:
        body["status"] = {"phase": phase}
    return body


class Driver:
    """Records each run; runs until stopped unless ``ends`` (then returns at once)."""

    def __init__(self, *, ends: bool = False, fails: int = 0) -> None:
        self.ends = ends
        self.fails = fails
        self.runs: list[str] = []
        self.seen: list[Mapping[str, Any]] = []
        self.stopped_runs = 0

    async def drive(
        self, body: Callable[[], Mapping[str, Any]], stopped: Stopped, logger: logging.Logger
    ) -> None:
        self.runs.append(str(body()["metadata"]["uid"]))
        if self.fails:
            self.fails -= 1
            raise AgentError("agent away", reason="AgentUnavailable")
        if self.ends:
            return
        while not stopped:
            self.seen.append(body())
            await stopped.wait(0.01)
        self.stopped_runs += 1


def _settle() -> Any:
    return asyncio.sleep(0.05)


def test_forensiccheckpoints_have_no_daemon_or_timer_handler() -> None:
    """A daemon (or timer) handler makes kopf keep every object's body in memory for good."""
    registry = kopf.OperatorRegistry()
    wiring.register(registry, Driver())  # type: ignore[arg-type]
    info = ForensicCheckpoint.crd
    resource = kopf.Resource(info.group, info.version, info.plural)
    assert not registry._spawning.has_handlers(resource=resource)


def test_a_task_per_object_in_flight_none_for_a_finished_one() -> None:
    async def run() -> None:
        driver = Driver()
        captures = InFlightCaptures(driver)
        captures.observe(_body("a"), None, LOG)  # the first listing: no status yet
        captures.observe(_body("b", "Capturing"), None, LOG)
        captures.observe(_body("c", "Completed"), None, LOG)
        captures.observe(_body("a"), "MODIFIED", LOG)  # no second task
        await _settle()
        assert sorted(captures.running()) == ["a", "b"]
        assert sorted(driver.runs) == ["a", "b"]
        await captures.close()
        assert captures.running() == [] and driver.stopped_runs == 2

    asyncio.run(run())


def test_the_task_sees_the_latest_body() -> None:
    async def run() -> None:
        driver = Driver()
        captures = InFlightCaptures(driver)
        captures.observe(_body("a"), None, LOG)
        await _settle()
        captures.observe(_body("a", labels={"hold": "true"}), "MODIFIED", LOG)
        await _settle()
        assert driver.seen[-1]["metadata"]["labels"] == {"hold": "true"}
        await captures.close()

    asyncio.run(run())


def test_a_deletion_stops_the_task_and_the_clean_up_waits_for_it() -> None:
    async def run() -> None:
        driver = Driver()
        captures = InFlightCaptures(driver)
        captures.observe(_body("a", "Capturing"), None, LOG)
        await _settle()
        deleting = _body("a", "Capturing", deletionTimestamp="2026-12-06T12:00:00Z")
        captures.observe(deleting, "MODIFIED", LOG)
        await captures.stop("a")
        assert captures.running() == [] and driver.stopped_runs == 1
        captures.observe(deleting, "MODIFIED", LOG)  # no new task for a deleted object
        await _settle()
        assert driver.runs == ["a"]

    asyncio.run(run())


def test_a_stuck_task_is_cancelled_after_the_timeout() -> None:
    class Stuck(Driver):
        async def drive(self, body: Any, stopped: Stopped, logger: logging.Logger) -> None:
            await asyncio.sleep(3600)  # e.g. a long agent request that ignores the flag

    async def run() -> None:
        captures = InFlightCaptures(Stuck())
        captures.observe(_body("a"), None, LOG)
        await _settle()
        await asyncio.wait_for(captures.stop("a", timeout=0.05), timeout=2)
        assert captures.running() == []

    asyncio.run(run())


def test_an_error_is_retried_like_a_daemon() -> None:
    async def run() -> None:
        driver = Driver(fails=2)
        captures = InFlightCaptures(driver, retry_delay=0.01)
        captures.observe(_body("a"), None, LOG)
        await asyncio.sleep(0.2)
        assert driver.runs == ["a", "a", "a"] and captures.running() == ["a"]
        await captures.close()

    asyncio.run(run())


def test_a_late_event_of_an_earlier_write_does_not_start_an_ended_capture_again() -> None:
    """The task ended with its final status write; the watch may still bring an earlier one."""

    async def run() -> None:
        driver = Driver(ends=True)
        captures = InFlightCaptures(driver)
        captures.observe(_body("a", "Capturing"), None, LOG)
        await _settle()
        assert captures.running() == []
        captures.observe(_body("a", "Capturing"), "MODIFIED", LOG)
        await _settle()
        assert driver.runs == ["a"]

    asyncio.run(run())


def test_a_restart_resumes_every_capture_from_the_listing() -> None:
    """A new operator's first listing starts a task for each object still in flight."""

    async def run() -> None:
        before = InFlightCaptures(Driver())
        before.observe(_body("a", "Capturing"), None, LOG)
        await _settle()
        await before.close()  # the operator stops
        driver = Driver()
        after = InFlightCaptures(driver)
        after.observe(_body("a", "Capturing"), None, LOG)
        await _settle()
        assert driver.runs == ["a"] and after.running() == ["a"]
        await after.close()

    asyncio.run(run())


def test_defaults_match_the_daemon_they_replace() -> None:
    assert in_flight.RETRY_DELAY == 5.0 and in_flight.CANCELLATION_TIMEOUT == 5.0


class _NoCopy:
    """A status value that refuses to be deep-copied: the diff base must not copy the status."""

    def __deepcopy__(self, memo: Any) -> Any:
        raise AssertionError("the status was deep-copied")


def test_the_diff_base_is_built_without_copying_the_status() -> None:
    """kopf deep-copies each event's whole body for the diff base, then drops the status and
    the managed fields: a fifth of the operator's CPU in a burst of 1,000 captures."""
    storage = runner.SlimDiffBaseStorage(prefix=runner.ANNOTATION_PREFIX, key="last")
    plain = kopf.AnnotationsDiffBaseStorage(prefix=runner.ANNOTATION_PREFIX, key="last")
    body = _body("a", labels={"hold": "true"}, annotations={"note": "x"})
    expected = plain.build(
        body=kopf.Body(cast(kopf.RawBody, body)), extra_fields=["metadata.labels"]
    )
    body["status"] = {"custody": [_NoCopy()]}
    body["metadata"]["managedFields"] = [_NoCopy()]
    essence = storage.build(
        body=kopf.Body(cast(kopf.RawBody, body)), extra_fields=["metadata.labels"]
    )
    assert essence == expected


def test_the_watch_handler_does_not_log_a_line_per_event(caplog: Any) -> None:
    """kopf logs each handler's success; the watch handler runs on every event of every object."""
    wiring.register(kopf.OperatorRegistry(), Driver())  # type: ignore[arg-type]
    objects = logging.getLogger("kopf.objects")
    with caplog.at_level(logging.INFO, logger="kopf.objects"):
        objects.info("Handler 'watch' succeeded.")
        objects.info("Handler 'cleanup' succeeded.")
    assert [r.getMessage() for r in caplog.records] == ["Handler 'cleanup' succeeded."]
