"""The analyzer and checkpointctl v1.5.0 read the same freshly captured real archive alike:
identity, sizes, the process tree with its command lines, and the sockets."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.realnode.support import REPO, RealNodeEnv

from forensic_checkpoint_dev.cluster import binaries


@pytest.fixture(scope="module")
def checkpointctl() -> Path:
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-peers.sh")],
        env={**os.environ, "TOOLS_DIR": str(binaries.tools_dir())},
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return Path(built.stdout.strip().splitlines()[-1])


def _tree(node: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """pid -> (comm, command line) of checkpointctl's process tree."""
    found = {int(node["pid"]): (node["command"], node["cmdline"].strip())}
    for child in node.get("children") or []:
        found.update(_tree(child))
    return found


def test_analyzer_and_checkpointctl_agree_on_a_real_archive(
    real_env: RealNodeEnv, checkpointctl: Path
) -> None:
    real_env.busybox_pod("peers", "mkdir -p /srv && cd /srv && httpd -f -p 8099 & sleep 3600")
    try:
        obj = real_env.capture("peers", {"podName": "peers"})
        assert obj["status"]["phase"] == "Completed", obj["status"]
        archive = Path(obj["status"]["containers"][0]["archive"]["path"])
        theirs = json.loads(
            subprocess.run(
                [str(checkpointctl), "inspect", "--all", "--format", "json", str(archive)],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
        )[0]
        ours = json.loads(
            subprocess.run(
                [str(REPO / ".venv" / "bin" / "forensic-checkpoint"), "analyze", "-o",
                 "json", str(archive)],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
        )  # fmt: skip
    finally:
        real_env.delete_pod("peers")

    assert ours["archive"]["engine"] == theirs["engine"] == "containerd"
    assert ours["container"]["id"] == theirs["id"]
    assert ours["container"]["image"] == theirs["image"]
    assert ours["container"]["runtime"] == theirs["runtime"]
    sizes = theirs["checkpoint_size"]
    assert ours["archive"]["checkpointSizeBytes"] == sizes["total_size"]
    assert ours["archive"]["memoryPagesSizeBytes"] == sizes["memory_pages_size"]
    assert ours["archive"]["rootfsDiffSizeBytes"] == sizes["root_fs_diff_size"]
    their_tree = _tree(theirs["process_tree"])
    our_comms = {p["pid"]: p["comm"] for p in ours["processes"]}
    assert our_comms == {pid: comm for pid, (comm, _) in their_tree.items()}
    assert set(our_comms.values()) >= {"sleep", "httpd"}
    # checkpointctl reads command lines from the pages; where it finds one, it is ours.
    our_cmdlines = {p["pid"]: " ".join(p["cmdline"]) for p in ours["processes"]}
    assert all(our_cmdlines.values())
    for pid, (_, cmdline) in their_tree.items():
        assert not cmdline or cmdline == our_cmdlines[pid]
    their_listen = {
        (s["data"]["src"], s["data"]["src_port"])
        for entry in theirs.get("sockets") or []
        for s in entry["open_sockets"]
        if s["data"].get("state") == "LISTEN"
    }
    our_listen = {
        (s["localAddress"], s["localPort"]) for s in ours["sockets"] if s.get("state") == "LISTEN"
    }
    assert our_listen == their_listen
    assert any(port == 8099 for _, port in our_listen)
