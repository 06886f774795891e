"""Archives no capture claims: the late archive of an abandoned kubelet call, and the sweep.

The kubelet stand-in gives up the way the agent's client does (``KubeletCallAbandoned``, as
after a read timeout) and writes the archive later anyway: the real node's second run in
real-node.md B2 (a 2 GiB archive written 0.9 s after the job had failed with Timeout).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.agent.agent_support import DirKubelet, hashing_analyzer, request, sha256
from tests.factories import capture_service

from forensic_checkpoint.agent.capture.orphans import (
    ORPHAN_ARCHIVE,
    ORPHAN_ARCHIVE_DELETED,
    OrphanKeeper,
    OrphanPolicy,
)
from forensic_checkpoint.agent.capture.service import CaptureService
from forensic_checkpoint.agent.evidence.retention_keeper import RetentionKeeper
from forensic_checkpoint.agent.jobs import JobStore
from forensic_checkpoint.api.agent import CaptureState, CaptureStatus
from forensic_checkpoint.domain.evidence.retention import Limits, RetentionPolicy


class Env:
    def __init__(self, root: Path, sample: Path) -> None:
        self.checkpoints = root / "checkpoints"
        self.checkpoints.mkdir()
        self.state = root / "state"
        self.kubelet = DirKubelet(self.checkpoints, sample)
        self.services: list[CaptureService] = []
        self.keepers: list[OrphanKeeper] = []

    def start(
        self, *, policy: OrphanPolicy = OrphanPolicy.ADOPT, late_window: float = 10.0
    ) -> tuple[CaptureService, OrphanKeeper]:
        service = capture_service(
            self.state,
            self.kubelet,
            self.checkpoints,
            hashing_analyzer,
            late_archive_window=late_window,
            poll_interval=0.1,
        )
        keeper = OrphanKeeper(service=service, policy=policy, grace=60.0, interval=0)
        service.on_finished.append(keeper.wake)
        keeper.start()
        service.start()
        self.services.append(service)
        self.keepers.append(keeper)
        return service, keeper

    def archive(self, pod: str, when: datetime, *, age: float = 0.0) -> Path:
        """A kubelet-named archive of default/<pod>/app stamped ``when``, ``age`` s old."""
        stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        path = self.checkpoints / f"checkpoint-{pod}_default-app-{stamp}.tar"
        path.write_bytes(self.kubelet.sample.read_bytes())
        path.chmod(0o644)
        if age:
            old = time.time() - age
            os.utime(path, (old, old))
        return path


@pytest.fixture
def env(tmp_path: Path, sample_tar: Path) -> Iterator[Env]:
    environment = Env(tmp_path, sample_tar)
    yield environment
    for keeper in environment.keepers:
        keeper.stop()
    for service in environment.services:
        service.shutdown(wait=True)


def until(
    service: CaptureService,
    key: str,
    done: Callable[[CaptureStatus], bool],
    timeout: float = 15.0,
) -> CaptureStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = service.status(key)
        if done(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def metric(service: CaptureService, action: str) -> float:
    name = f'forensic_checkpoint_agent_orphan_archives_total{{action="{action}"}}'
    for line in service.metrics.render().decode().splitlines():
        if line.startswith(name):
            return float(line.split()[1])
    return 0.0


@pytest.mark.slow  # waits for a late write
def test_an_archive_written_after_a_timeout_is_kept_with_the_failed_capture(env: Env) -> None:
    env.kubelet.late_write = 1.0
    service, _ = env.start()
    service.submit(request("uid1-app"))
    failed = until(service, "uid1-app", lambda s: s.state.terminal)
    assert (failed.state, failed.reason, failed.archive) == (CaptureState.FAILED, "Timeout", None)
    assert failed.late_archive_watch_until is not None
    assert "watches" in (failed.message or "")

    kept = until(service, "uid1-app", lambda s: s.archive is not None)
    [late] = env.kubelet.late_written
    assert kept.archive is not None and Path(kept.archive.path) == late.resolve()
    assert kept.archive.sha256 == sha256(late) and kept.archive.size_bytes == late.stat().st_size
    assert stat.S_IMODE(late.stat().st_mode) == 0o600
    assert (kept.state, kept.reason, kept.orphan_archive) == (CaptureState.FAILED, "Timeout", True)
    assert f"the kubelet wrote {late.resolve()}" in (kept.message or "")
    [fact] = kept.custody_events
    assert (fact.action, fact.reason, fact.sha256) == (
        "Captured",
        ORPHAN_ARCHIVE,
        kept.archive.sha256,
    )
    assert fact.kubelet_response is None
    assert metric(service, "attached") == 1.0
    # Accounted like any archive: in the stored bytes, served, and deleted with the capture.
    assert service.storage()[1] == late.stat().st_size
    assert service.archive_file("uid1-app")[0] == late.resolve()
    assert len(env.kubelet.calls) == 1
    assert service.delete("uid1-app").deleted == [str(late.resolve())]
    assert not late.exists()


@pytest.mark.slow  # waits out the late window
def test_the_watch_ends_and_a_failure_without_a_late_archive_stays_as_it_was(env: Env) -> None:
    env.kubelet.late_write = 3600.0  # never within the test
    service, keeper = env.start(late_window=0.5)
    service.submit(request("uid2-app"))
    failed = until(service, "uid2-app", lambda s: s.state.terminal)
    assert failed.late_archive_watch_until is not None
    time.sleep(0.8)
    assert keeper.watch_once() == []  # the window is over: nothing is watched any more
    assert service.status("uid2-app").archive is None


def test_sweep_attaches_an_old_late_archive_to_the_capture_that_gave_up(env: Env) -> None:
    """The agent restarted after giving up (or the file came after the window): the sweep
    attaches the archive to the newest capture of that container whose call got no answer."""
    store = JobStore(env.state)
    called = datetime.now(UTC) - timedelta(minutes=10)
    for key, at in (("uid3-app", called - timedelta(minutes=5)), ("uid4-app", called)):
        record, _ = store.create_if_absent(request(key))
        record.kubelet_called_at = record.status.started_at = at
        record.status.state = CaptureState.FAILED
        record.status.reason = "Timeout"
        record.status.finished_at = at + timedelta(seconds=150)
        store.save(record)
    late = env.archive("counter", called + timedelta(seconds=151), age=400)
    service, keeper = env.start()  # its first pass sweeps
    newer = until(service, "uid4-app", lambda s: s.archive is not None)
    assert keeper.sweep_once() == []  # claimed now: not handled twice
    assert newer.archive is not None and newer.archive.path == str(late.resolve())
    assert newer.orphan_archive and newer.state is CaptureState.FAILED
    assert service.status("uid3-app").archive is None
    assert metric(service, "attached") == 1.0


def test_sweep_adopts_an_archive_no_capture_caused_and_retention_then_applies(env: Env) -> None:
    stray = env.archive("handmade", datetime.now(UTC) - timedelta(hours=2), age=7200)
    fresh = env.archive("handmade", datetime.now(UTC))  # may still be written: left for later
    service, keeper = env.start()
    deadline = time.monotonic() + 10
    while metric(service, "adopted") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    [orphan] = [r for r in service.store.all() if r.status.orphan_archive]
    status = orphan.status
    assert status.key.startswith("orphan-")
    assert (status.state, status.reason) == (CaptureState.FAILED, ORPHAN_ARCHIVE)
    assert status.archive is not None and status.archive.path == str(stray.resolve())
    assert status.archive.sha256 == sha256(stray)
    assert (orphan.request.pod_name, orphan.request.pod_namespace) == ("handmade", "default")
    assert orphan.request.container == "app"
    assert [f.action for f in status.custody_events] == ["Captured"]
    assert stat.S_IMODE(stray.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # untouched within the grace period
    assert keeper.sweep_once() == []  # claimed now: not adopted twice

    retention = RetentionKeeper(
        store=service.store,
        policy=RetentionPolicy(node_limits=Limits(max_age=timedelta(hours=1))),
        node_name="node-1",
        checkpoint_dir=env.checkpoints,
        metrics=service.metrics,
    )
    retention.run_once()
    gone = service.status(status.key)
    assert gone.archive_deleted_reason == "RetentionMaxAge" and not stray.exists()
    assert [f.action for f in gone.custody_events] == ["Captured", "Deleted"]


@pytest.mark.slow  # waits for a late write
def test_delete_policy_hashes_records_and_removes_orphans(env: Env) -> None:
    stray = env.archive("handmade", datetime.now(UTC) - timedelta(hours=1), age=3600)
    env.kubelet.late_write = 0.5
    service, _ = env.start(policy=OrphanPolicy.DELETE)
    service.submit(request("uid5-app"))
    deadline = time.monotonic() + 15
    while metric(service, "deleted") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    [late] = env.kubelet.late_written
    assert not late.exists() and not stray.exists()
    status = service.status("uid5-app")
    assert status.archive is None and not status.orphan_archive
    [fact] = status.custody_events
    assert (fact.action, fact.reason) == ("Deleted", ORPHAN_ARCHIVE_DELETED)
    assert fact.sha256 == sha256(env.kubelet.sample)  # hashed before it went
    assert fact.size_bytes == env.kubelet.sample.stat().st_size
    assert "deleted by policy" in (status.message or "")
    # The stray one had no capture: logged with its hash and counted, no job made for it.
    assert not [r for r in service.store.all() if r.status.key.startswith("orphan-")]


def test_an_archive_of_a_capture_in_flight_is_never_taken(env: Env) -> None:
    store = JobStore(env.state)
    record, _ = store.create_if_absent(request("uid6-app"))
    record.status.state = CaptureState.CAPTURING
    record.kubelet_called_at = datetime.now(UTC) - timedelta(hours=1)
    store.save(record)
    old = env.archive("counter", datetime.now(UTC) - timedelta(minutes=30), age=1800)
    service = capture_service(
        env.state, env.kubelet, env.checkpoints, hashing_analyzer, poll_interval=0.1
    )
    keeper = OrphanKeeper(service=service, grace=0.0, interval=0)
    assert keeper.sweep_once() == []  # the Capturing job may still claim it
    assert stat.S_IMODE(old.stat().st_mode) == 0o644


def test_policy_values_are_checked() -> None:
    from forensic_checkpoint.errors import ConfigError

    assert OrphanPolicy.parse("delete") is OrphanPolicy.DELETE
    with pytest.raises(ConfigError, match="adopt or delete"):
        OrphanPolicy.parse("keep")


@pytest.mark.slow  # waits for a late write
@pytest.mark.parametrize("held", [False, True])
def test_the_late_archive_of_a_capture_deleted_in_flight_is_deleted_unless_held(
    env: Env, held: bool
) -> None:
    """issue 15 item 8: DELETE while the call runs marks the job; the late archive is deleted
    by the watch whatever the policy (adopt here), or kept as evidence if the job is held."""
    env.kubelet.delay = 0.3
    env.kubelet.late_write = 1.0
    service, _ = env.start()
    service.submit(request("uid9-app"))
    until(service, "uid9-app", lambda s: s.state is CaptureState.CAPTURING)
    if held:
        service.set_hold("uid9-app", True)
    assert service.delete("uid9-app").pending is True
    done = until(service, "uid9-app", lambda s: len(s.custody_events) > 0)
    [late] = env.kubelet.late_written
    assert (done.state, done.reason) == (CaptureState.FAILED, "Timeout")
    [fact] = done.custody_events
    if held:
        assert done.archive is not None and late.is_file()
        assert (fact.action, fact.sha256) == ("Captured", sha256(late))
        assert metric(service, "late-kept") == 1.0
        return
    assert not late.exists() and done.archive is None
    assert (fact.action, fact.reason) == ("Deleted", "DeletedWhileCapturing")
    assert fact.sha256 is not None and fact.sha256 in (done.message or "")
    assert metric(service, "late-deleted") == 1.0
    assert metric(service, "attached") == 0.0
