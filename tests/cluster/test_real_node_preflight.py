"""Where a machine cannot run a real node, `cluster up --real-node` says why in one line
and starts nothing: no fake stands in for it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from forensic_checkpoint_dev.cli import main
from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.realnode import node as real_node


@pytest.mark.cluster  # it calls DevCluster.start, which refuses before starting anything
def test_without_root_up_real_node_says_why_in_one_line_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI as a non-root user would run it (the euid it checks is that of nobody)."""
    directory = tmp_path / "cluster"
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    code = main(
        ["cluster", "up", "--real-node", "--nodes", "0", "--dir", str(directory), "--no-build"]
    )
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "forensic-checkpoint-dev cluster: error: a real node needs root "
        "(containerd, mounts, a bridge, iptables)"
    ]
    assert not directory.exists()


def test_a_failing_criu_check_is_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A kernel where CRIU cannot dump (Debian's 3.17.1 here: vdso) must not start a node."""
    fake_criu = tmp_path / "criu"
    fake_criu.write_text(
        "#!/bin/sh\necho 'Error (criu/vdso.c:330): vdso: Unexpected rt vDSO area' >&2\nexit 1\n"
    )
    fake_criu.chmod(0o755)
    tools = binaries.locate_node_tools()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        binaries,
        "node_tools",
        lambda **_: type(tools)(**{**tools.__dict__, "criu": fake_criu}),
    )
    monkeypatch.setattr(real_node, "node_ip", lambda: "192.0.2.2")
    monkeypatch.setattr(real_node, "LOCK_FILE", tmp_path / "no-lock")
    with pytest.raises(real_node.RealNodeUnavailable) as info:
        real_node.preflight()
    assert str(info.value) == (
        "`criu check` fails on this kernel: Error (criu/vdso.c:330): vdso: Unexpected rt vDSO area"
    )


def test_a_node_in_use_is_refused_at_once_or_waited_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another cluster's live claim refuses a start with the way out; with
    FORENSIC_REAL_NODE_WAIT the start waits until that claim ends (a CI pass on a machine
    where other real-node work runs)."""
    lock = tmp_path / "lock"
    lock.write_text(str(tmp_path / "other-cluster"))
    monkeypatch.setattr(real_node, "LOCK_FILE", lock)
    alive = iter([True, True, False])  # the other cluster goes down after two looks
    monkeypatch.setattr(real_node, "_claim_alive", lambda _d: True)
    monkeypatch.delenv(real_node.WAIT_ENV, raising=False)
    with pytest.raises(real_node.RealNodeUnavailable) as info:
        real_node._wait_for_the_node()
    assert "FORENSIC_REAL_NODE_WAIT=SECONDS" in str(info.value)
    monkeypatch.setattr(real_node, "_claim_alive", lambda _d: next(alive))
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    monkeypatch.setenv(real_node.WAIT_ENV, "60")
    real_node._wait_for_the_node()  # returns once the claim is gone
    assert next(alive, None) is None
