"""The real node's NetworkPolicy enforcer, without starting it: kube-router with its firewall
alone, a node tool like the others, started only once the Node exists, and its ipsets removed
by `down`. The enforcement itself is checked on the real node
(tests/realnode/test_in_cluster.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.cluster.components import SERVICE_CIDR
from forensic_checkpoint_dev.realnode import addons, host
from forensic_checkpoint_dev.realnode.node import RealNode


def node(tmp_path: Path) -> RealNode:
    return RealNode(
        name="realnode",
        ip="192.0.2.2",
        port=10250,
        token="abcd",
        serving_ca=tmp_path / "ca.crt",
        containerd_root=tmp_path,
        metrics_port=1,
        addon_ports={"routerHealth": 20244},
    )


def test_kube_router_runs_its_firewall_alone(tmp_path: Path) -> None:
    tools = binaries.locate_node_tools()
    argv = addons.kube_router_argv(node(tmp_path), tools, tmp_path / "kr.kubeconfig")
    assert argv[0] == str(tools.kube_router)
    assert "--run-firewall=true" in argv
    assert "--run-router=false" in argv and "--run-service-proxy=false" in argv
    assert f"--service-cluster-ip-range={SERVICE_CIDR}" in argv
    assert "--hostname-override=realnode" in argv and "--health-port=20244" in argv
    assert "kube-router" in addons.COMPONENTS  # `down` stops it with the other add-ons
    assert "routerHealth" in addons.choose_ports()


def test_kube_router_is_a_pinned_node_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORENSIC_TOOLS_DIR", str(tmp_path))
    version = binaries.pinned_versions()["KUBE_ROUTER_VERSION"]
    tools = binaries.locate_node_tools()
    assert tools.kube_router == tmp_path / f"kube-router-{version}" / "kube-router"
    assert "kube-router" in binaries.missing_node_tools()


def test_start_firewall_spawns_what_start_prepared(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    launch = {"argv": ["kube-router", "--run-firewall=true"], "env": {"PATH": "/usr/bin"}}
    (tmp_path / "etc" / addons.ROUTER_LAUNCH).write_text(json.dumps(launch))
    spawned: list[tuple[str, list[str], dict[str, str] | None]] = []

    def spawn(component: str, argv: Any, env: dict[str, str] | None) -> int:
        spawned.append((component, list(argv), env))
        return 1

    addons.start_firewall(tmp_path, spawn)
    assert spawned == [("kube-router", launch["argv"], launch["env"])]


def test_down_destroys_only_the_ipsets_made_after_the_node_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sets = ["machine-own", "KUBE-SRC-ABC", "KUBE-DST-DEF"]
    destroyed: list[str] = []

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        if argv[:2] == ["ipset", "destroy"]:
            destroyed.append(argv[2])
            sets.remove(argv[2])
        return subprocess.CompletedProcess(argv, 0, stdout="\n".join(sets) + "\n")

    monkeypatch.setattr(subprocess, "run", run)
    assert host.ipsets() == sets
    assert host.remove_ipsets(["machine-own"]) == []
    assert destroyed == ["KUBE-SRC-ABC", "KUBE-DST-DEF"]
    assert sets == ["machine-own"]


def test_without_the_ipset_tool_there_are_no_ipsets(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(argv[0])

    monkeypatch.setattr(subprocess, "run", run)
    assert host.ipsets() == []
