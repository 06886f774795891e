"""Captures through a real kubelet, containerd, runc and CRIU: the blog flow, both kubelet
credentials, established TCP with and without the agent's CRIU config, and pods that cannot be
checkpointed."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from tests.realnode.support import NAMESPACE, SECRET, RealNodeEnv

BLOG_CHECKPOINT = Path(__file__).resolve().parents[2] / "e2e" / "forensiccheckpoint.yaml"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def counter(real_env: RealNodeEnv) -> dict[str, object]:
    pod = real_env.start_counter()
    assert pod["spec"]["nodeName"] == real_env.node.name  # scheduled, not bound by the test
    return pod


def test_blog_flow_completes_with_the_secret_at_the_pid_that_holds_it(
    real_env: RealNodeEnv, counter: dict[str, object]
) -> None:
    calls = real_env.node.runtime_calls()
    started = time.monotonic()
    real_env.kubectl("-n", NAMESPACE, "apply", "-f", str(BLOG_CHECKPOINT))
    obj = real_env.stack.wait_phase(NAMESPACE, "blog", timeout=120)
    elapsed = time.monotonic() - started
    status = obj["status"]
    assert status["phase"] == "Completed", json.dumps(status)[:2000]
    print(f"\nblog: create to Completed in {elapsed:.1f} s on the real node")
    assert real_env.node.runtime_calls() == calls + 1  # one CRI checkpoint, no retry

    container = status["containers"][0]
    archive = container["archive"]
    path = Path(archive["path"])
    assert path.parent == real_env.node.checkpoint_dir
    assert path.name.startswith("checkpoint-counters_default-counter-")
    assert _sha256(path) == archive["sha256"]  # the kubelet's file, as hashed by the agent
    assert path.stat().st_mode & 0o777 == 0o600

    summary = container["summary"]
    by_pid = {p["pid"]: p["cmdline"] for p in summary["processes"]}
    counter_pids = [pid for pid, cmd in by_pid.items() if cmd.startswith("python3 ")]
    assert len(counter_pids) == 1, by_pid
    assert any("tee /home/counter/logfile" in cmd for cmd in by_pid.values()), by_pid
    hits = [h for h in summary["memoryHits"] if h["pattern"] == SECRET]
    assert counter_pids[0] in {h["pid"] for h in hits}, hits
    assert any(s["local"].endswith(":8088") for s in summary["listening"])
    identity = summary.get("identity") or {}
    assert identity.get("matchesRequest") is True, identity


def test_e2e_assert_blog_script_passes(real_env: RealNodeEnv, counter: dict[str, object]) -> None:
    """The unchanged e2e/assert-blog.sh, as e2e/kind.sh runs it, against the real capture."""
    if real_env.stack.get_checkpoint(NAMESPACE, "blog") is None:
        real_env.kubectl("-n", NAMESPACE, "apply", "-f", str(BLOG_CHECKPOINT))
    real_env.run_script("assert-blog.sh", NAMESPACE)
