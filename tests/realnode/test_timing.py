"""The capture path's timing on the real node, with a container of 2 GiB whose dump takes
seconds (``make test-slow``): the kubelet's raised deadline, an agent that gives up while the
kubelet still dumps, and an agent killed mid-dump.

The invariant behind the last two: every archive in the kubelet's checkpoint directory belongs
to a ForensicCheckpoint that shows it. No full memory dump sits on a node unaccounted for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.realnode.support import NAMESPACE, RealNodeEnv, wait_for

pytestmark = pytest.mark.timing

BIG_POD = "bigmem"
GIB = 2


@pytest.fixture(scope="module")
def bigmem(real_env: RealNodeEnv) -> Iterator[str]:
    real_env.memory_hog(BIG_POD, GIB)
    try:
        yield BIG_POD
    finally:
        real_env.delete_pod(BIG_POD)


def _spec(timeout_seconds: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podName": BIG_POD}
    if timeout_seconds is not None:
        spec["timeoutSeconds"] = timeout_seconds
    return spec


def _accounted(real_env: RealNodeEnv) -> tuple[set[Path], set[Path]]:
    """(archives on the node, archives some ForensicCheckpoint's status names)."""
    on_node = set(real_env.checkpoints_on_node())
    listed = real_env.kubectl(
        "-n", NAMESPACE, "get", "fcp", "-o",
        "jsonpath={range .items[*]}{range .status.containers[*]}{.archive.path}{'\\n'}{end}{end}",
    )  # fmt: skip
    return on_node, {Path(line) for line in listed.split() if line}


def _assert_every_archive_accounted(real_env: RealNodeEnv, within: float) -> None:
    def check() -> bool:
        on_node, named = _accounted(real_env)
        return on_node <= named

    wait_for(check, within, f"archives on the node but in no status: {_accounted(real_env)}", 1.0)


def _clean(real_env: RealNodeEnv, *names: str) -> None:
    for name in names:
        if real_env.stack.get_checkpoint(NAMESPACE, name) is not None:
            real_env.stack.delete_checkpoint(NAMESPACE, name)
    wait_for(
        lambda: all(real_env.stack.get_checkpoint(NAMESPACE, n) is None for n in names),
        120,
        "the ForensicCheckpoints were not deleted",
    )


def test_short_timeout_waits_for_the_kubelets_real_deadline(
    real_env: RealNodeEnv, bigmem: str
) -> None:
    """The kubelet raises ``?timeout=1`` to its runtimeRequestTimeout (2 min): the dump takes
    longer than 1 s + the agent's margin (5 s here), and must still complete."""
    calls = real_env.node.runtime_calls()
    started = time.monotonic()
    obj = real_env.capture("short-timeout", _spec(timeout_seconds=1), timeout=300)
    elapsed = time.monotonic() - started
    status = obj["status"]
    assert status["phase"] == "Completed", status
    container = status["containers"][0]
    print(f"\n2 GiB capture: Completed in {elapsed:.1f} s, frozen {container.get('frozenTime')}")
    print(f"stage timings (ms): {container.get('timings')}")
    assert {"queuedMs", "kubeletMs", "hashMs", "analysisMs", "reportMs"} <= set(
        container["timings"]
    ), container
    assert elapsed > 6, "the dump was too quick to show the kubelet's raised deadline"
    assert real_env.node.runtime_calls() == calls + 1
    assert container["frozenTime"], container
    assert status.get("frozenTime"), status
    _clean(real_env, "short-timeout")


def test_an_agent_that_gives_up_leaves_no_unaccounted_archive(
    real_env: RealNodeEnv, bigmem: str
) -> None:
    """An agent told the kubelet's deadline is 1 s gives up after 6 s while the kubelet still
    dumps. Closing the connection cancels the dump, or the archive lands anyway (containerd may
    be past the point where it checks): then the failed capture keeps watching for it and shows
    it. Either way nothing may stay on the node that no ForensicCheckpoint shows."""
    assert not real_env.checkpoints_on_node()
    real_env.start_agent(extra_args=("--kubelet-runtime-request-timeout", "1"))
    try:
        calls = real_env.node.runtime_calls()
        obj = real_env.capture("gave-up", _spec(timeout_seconds=1), timeout=300)
        status = obj["status"]
        assert status["phase"] == "Failed", status
        container = status["containers"][0]
        assert container["reason"] == "Timeout", status
        assert real_env.node.runtime_calls() == calls + 1
        watch_until = datetime.fromisoformat(container["lateArchiveWatchUntil"])

        def settled() -> bool:
            current = real_env.stack.get_checkpoint(NAMESPACE, "gave-up") or {}
            landed = current["status"]["containers"][0]
            return bool(landed.get("archive")) or datetime.now(UTC) > watch_until

        wait_for(settled, 300, "the agent's watch for a late archive never ended")
        _assert_every_archive_accounted(real_env, within=30)
        landed = (real_env.stack.get_checkpoint(NAMESPACE, "gave-up") or {})["status"]
        container = landed["containers"][0]
        if container.get("archive"):
            print(f"\nthe kubelet finished the dump anyway: {container['archive']['path']}")
            assert container["orphanArchive"] is True
            assert len(container["archive"]["sha256"]) == 64
        else:
            print("\nthe kubelet cancelled the dump when the agent hung up")
            assert not real_env.checkpoints_on_node()
    finally:
        real_env.start_agent()
        _clean(real_env, "gave-up")
    assert not real_env.checkpoints_on_node()  # deleting the CR deleted its late archive


def test_agent_killed_mid_dump_fails_quickly_without_a_second_call(
    real_env: RealNodeEnv, bigmem: str
) -> None:
    """containerd cancels the dump when the calling agent dies; the restarted agent must say so
    within seconds, not after the kubelet's full deadline, and never call again."""
    assert not real_env.checkpoints_on_node()
    calls = real_env.node.runtime_calls()
    real_env.stack.create_checkpoint(NAMESPACE, "killed", _spec())
    wait_for(
        lambda: real_env.node.runtime_calls() > calls, 60, "the kubelet was never called", 0.05
    )
    time.sleep(0.5)  # inside the dump
    real_env.stack.kill_agent(real_env.node.name)
    restarted = time.monotonic()
    try:
        real_env.start_agent()
        obj = real_env.stack.wait_phase(NAMESPACE, "killed", timeout=120)
        decided = time.monotonic() - restarted
        status = obj["status"]
        container = status["containers"][0]
        print(f"\nagent killed mid-dump: {status['phase']} {decided:.1f} s after the restart")
        assert real_env.node.runtime_calls() == calls + 1  # never a second kubelet call
        if status["phase"] == "Failed":
            assert container["reason"] == "CaptureInterrupted", container
            assert "cancel" in container["message"], container["message"]
            assert decided < 60, f"the restarted agent took {decided:.0f} s to decide"
        else:  # the rare late file: written before the agent died, and adopted
            assert status["phase"] == "Completed", status
        _assert_every_archive_accounted(real_env, within=60)
    finally:
        _clean(real_env, "killed")
