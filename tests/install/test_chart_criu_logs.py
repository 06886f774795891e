"""The agent pod's CRIU log reader as the chart renders it (issue 15, item 10): CRIU's log of a
failed dump lies in each container's bundle, beside its config.json (environment values) and
rootfs, so only the ``criu-log-reader`` container mounts the runtime's directories, read-only,
and the agent reaches the logs through its socket (docs/security-model.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from forensic_checkpoint.cli import criu_log_reader

from .chart import CI_VALUES, agent_containers, documents, one, template

# Each test renders the chart with `helm template` (a subprocess, about 0.5 s a render).
pytestmark = pytest.mark.slow

CONTAINERD = "/run/containerd/io.containerd.runtime.v2.task/k8s.io"
CRIO = "/var/lib/containers/storage/overlay-containers"
SOCKET_DIR = "/run/forensic-checkpoint/criu-logs"


def agent_pod(*values: Path, set_values: list[str] | None = None) -> dict[str, Any]:
    docs = documents(template(*values, set_values=set_values or []))
    return dict(one(docs, "DaemonSet")["spec"]["template"]["spec"])


def test_the_agent_container_mounts_no_runtime_bundle() -> None:
    spec = agent_pod(set_values=[f"agent.criuLogDirs={{{CONTAINERD},{CRIO}}}"])
    agent, reader = agent_containers(spec)
    runtime = (CONTAINERD, CRIO, "/run/containerd", "/var/lib/containers")
    for mount in agent["volumeMounts"]:
        assert not mount["mountPath"].startswith(runtime), mount
    assert reader is not None
    assert f"--criu-log-socket={SOCKET_DIR}/reader.sock" in agent["args"]
    host = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    reader_host = {m["name"] for m in reader["volumeMounts"] if m["name"] in host}
    assert {host[n] for n in reader_host} == {CONTAINERD, CRIO}
    assert [a for a in reader["args"] if a.startswith("--dir=")] == [
        f"--dir={CONTAINERD}",
        f"--dir={CRIO}",
    ]


@pytest.mark.parametrize(
    "values", [None, *CI_VALUES], ids=["defaults", *(p.stem for p in CI_VALUES)]
)
def test_the_reader_is_confined_like_the_agent(values: Path | None) -> None:
    """Same security context; the runtime's directories read-only at their own paths and the
    socket's in-memory volume, nothing else; the agent mounts that volume read-only."""
    spec = agent_pod(*([values] if values else []))
    agent, reader = agent_containers(spec)
    assert reader is not None
    assert reader["securityContext"] == agent["securityContext"]
    host = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    criu_logs = {name: path for name, path in host.items() if name.startswith("criu-log-")}
    assert criu_logs
    mounts = {m["name"]: m for m in reader["volumeMounts"]}
    for name, path in criu_logs.items():
        assert mounts.pop(name) == {"name": name, "mountPath": path, "readOnly": True}
    assert mounts == {"criu-log-socket": {"name": "criu-log-socket", "mountPath": SOCKET_DIR}}
    socket_volume = next(v for v in spec["volumes"] if v["name"] == "criu-log-socket")
    assert socket_volume["emptyDir"]["medium"] == "Memory"
    (agent_mount,) = [m for m in agent["volumeMounts"] if m["name"] == "criu-log-socket"]
    assert agent_mount["readOnly"] is True


def test_the_readers_args_parse_with_the_real_cli() -> None:
    """The reader serves on the socket the agent asks, under the directories it mounts."""
    agent, reader = agent_containers(agent_pod())
    assert reader is not None
    assert reader["args"][0] == "criu-log-reader"
    parser = argparse.ArgumentParser(exit_on_error=False)
    criu_log_reader.add_arguments(parser)
    served = parser.parse_args(reader["args"][1:])
    assert f"--criu-log-socket={served.socket}" in agent["args"]
    read_only = [m["mountPath"] for m in reader["volumeMounts"] if m.get("readOnly")]
    assert [str(d) for d in served.dir] == read_only


def test_without_criu_log_dirs_there_is_no_reader() -> None:
    spec = agent_pod(set_values=["agent.criuLogDirs=null"])
    agent, reader = agent_containers(spec)
    assert reader is None
    assert not any(a.startswith("--criu-log") for a in agent["args"])
    assert not any(v["name"].startswith("criu-log") for v in spec["volumes"])
