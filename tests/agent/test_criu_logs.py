"""CRIU logs of failed dumps are read under the runtime's directories and nothing else there
(issue 15, item 10): not a bundle's config.json (the environment), not its rootfs, not through
a symlink, whichever path the kubelet's answer names."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from forensic_checkpoint.agent.kubelet import outcomes
from forensic_checkpoint.agent.kubelet.criu_log_reader import CriuLogReader
from forensic_checkpoint.agent.kubelet.criu_logs import (
    MAX_LOG_BYTES,
    LocalCriuLogs,
    Refused,
    SocketCriuLogs,
    allowed_parts,
    criu_log_source,
)
from forensic_checkpoint.errors import ConfigError

TESTS = Path(__file__).resolve().parents[1]
TCP_LOG = (TESTS / "readiness" / "data" / "containerd-tcp.dump.log").read_text()
ID = "3ad7b26ded6d9f2e4c1a0b7d8e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f"
OTHER = "9f" * 32
SECRET = "DATABASE_PASSWORD=hunter2-Error (criu/sk-inet.c:188): Connected TCP socket"


def _body(path: Path | str) -> str:
    """containerd 2.3.4's 500 body for a failed dump (docs/capture-readiness.md)."""
    return (
        "checkpointing of default/counter/app failed (rpc error: code = Unknown desc = "
        f'checkpointing container "{ID}" failed: runc did not terminate successfully: '
        f"exit status 1: criu failed: type NOTIFY errno 0 path= {path})"
    )


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    """containerd's ``io.containerd.runtime.v2.task/k8s.io``: two bundles, each with a
    config.json holding the container's environment, one with CRIU's log of a failed dump."""
    root = tmp_path / "io.containerd.runtime.v2.task" / "k8s.io"
    for cid in (ID, OTHER):
        bundle = root / cid
        (bundle / "rootfs" / "etc").mkdir(parents=True)
        (bundle / "config.json").write_text(f'{{"process": {{"env": ["{SECRET}"]}}}}')
        (bundle / "rootfs" / "etc" / "shadow").write_text(SECRET)
    (root / ID / "criu-dump.log").write_text(TCP_LOG)
    return root


def _classify(path: Path | str, logs: LocalCriuLogs | SocketCriuLogs) -> outcomes.Outcome:
    return outcomes.classify_http(500, _body(path), node="n1", target="a/b/c", criu_logs=logs)


def test_the_log_the_runtime_names_refines_the_reason(task_dir: Path) -> None:
    outcome = _classify(task_dir / ID / "criu-dump.log", LocalCriuLogs((task_dir,)))
    assert outcome.reason == "EstablishedTCPNeedsConfig"
    assert outcome.criu_log_excerpt and "Connected TCP socket" in outcome.criu_log_excerpt


def test_crio_layout_is_read(tmp_path: Path) -> None:
    userdata = tmp_path / "overlay-containers" / ID / "userdata"
    userdata.mkdir(parents=True)
    (userdata / "dump.log").write_text(TCP_LOG)
    logs = LocalCriuLogs((tmp_path / "overlay-containers",))
    assert logs.read(str(userdata / "dump.log")) == TCP_LOG


def test_a_symlinked_log_is_not_followed_to_the_environment(
    task_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A link planted as criu-dump.log must not make the agent read what it points at (here
    another container's config.json, whose text would even pass for a CRIU error)."""
    log = task_dir / OTHER / "criu-dump.log"
    log.symlink_to(task_dir / OTHER / "config.json")
    caplog.set_level(logging.WARNING)
    outcome = _classify(log, LocalCriuLogs((task_dir,)))
    assert (outcome.reason, outcome.criu_log_excerpt) == ("RuntimeError", None)
    assert "hunter2" not in caplog.text
    assert "symlink" in caplog.text


@pytest.mark.parametrize("link", ["bundle", "userdata"])
def test_a_symlinked_directory_is_not_followed(tmp_path: Path, link: str) -> None:
    """A link in place of the bundle (or CRI-O's userdata) to a directory that holds a file of
    the log's name: refused, not followed."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "userdata").mkdir(parents=True)
    (elsewhere / "criu-dump.log").write_text(SECRET)
    (elsewhere / "userdata" / "dump.log").write_text(SECRET)
    root = tmp_path / "runtime"
    root.mkdir()
    if link == "bundle":
        (root / ID).symlink_to(elsewhere)
        named = root / ID / "criu-dump.log"
    else:
        (root / ID).mkdir()
        (root / ID / "userdata").symlink_to(elsewhere / "userdata")
        named = root / ID / "userdata" / "dump.log"
    logs = LocalCriuLogs((root,))
    with pytest.raises(Refused, match="symlink"):
        logs.read_bytes(str(named))
    assert logs.read(str(named)) is None


@pytest.mark.parametrize(
    "below",
    [
        f"{ID}/config.json",
        f"{ID}/rootfs/etc/shadow",
        f"{ID}/dump.log",
        f"{ID}/userdata/config.json",
        f"{ID}/../{OTHER}/config.json",
        f"{ID}/./criu-dump.log",
        f"{ID}//criu-dump.log",
        "criu-dump.log",
        "-x/criu-dump.log",
        f"{'a' * 77}/criu-dump.log",
    ],
)
def test_only_criu_log_names_under_a_container_id_are_allowed(task_dir: Path, below: str) -> None:
    with pytest.raises(Refused):
        allowed_parts(f"{task_dir}/{below}", (task_dir,))
    assert LocalCriuLogs((task_dir,)).read(f"{task_dir}/{below}") is None


def test_a_path_outside_the_configured_directories_is_refused(
    task_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "other" / ID / "criu-dump.log"
    outside.parent.mkdir(parents=True)
    shutil.copy(task_dir / ID / "criu-dump.log", outside)
    for named in (str(outside), "relative/" + ID + "/criu-dump.log"):
        with pytest.raises(Refused):
            allowed_parts(named, (task_dir,))
    assert _classify(outside, LocalCriuLogs((task_dir,))).criu_log_excerpt is None


def test_a_fifo_named_like_the_log_is_refused_without_blocking(task_dir: Path) -> None:
    fifo = task_dir / OTHER / "criu-dump.log"
    os.mkfifo(fifo)
    with pytest.raises(Refused, match="not a regular file"):
        LocalCriuLogs((task_dir,)).read_bytes(str(fifo))


def test_a_missing_log_is_none(task_dir: Path) -> None:
    logs = LocalCriuLogs((task_dir,))
    assert logs.read_bytes(str(task_dir / OTHER / "criu-dump.log")) is None
    assert logs.read_bytes(str(task_dir / "0abc" / "criu-dump.log")) is None


def test_only_the_end_of_a_long_log_is_read(task_dir: Path) -> None:
    log = task_dir / OTHER / "criu-dump.log"
    log.write_bytes(b"x" * (2 * MAX_LOG_BYTES) + b"\nthe end\n")
    data = LocalCriuLogs((task_dir,)).read_bytes(str(log))
    assert data is not None and len(data) == MAX_LOG_BYTES and data.endswith(b"the end\n")


# --- the reader container and the agent's client ----------------------------------------------


@pytest.fixture
def reader(task_dir: Path) -> Iterator[CriuLogReader]:
    # A short path: a Unix socket's path is limited to 107 bytes, pytest's tmp paths are long.
    socket_dir = Path(tempfile.mkdtemp(prefix="fc-criu-"))
    server = CriuLogReader(socket_dir / "reader.sock", LocalCriuLogs((task_dir,)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(5)
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_the_agent_reads_the_log_through_the_reader(task_dir: Path, reader: CriuLogReader) -> None:
    assert stat.S_IMODE(reader.socket_path.stat().st_mode) == 0o600
    outcome = _classify(task_dir / ID / "criu-dump.log", SocketCriuLogs(reader.socket_path))
    assert outcome.reason == "EstablishedTCPNeedsConfig"
    assert outcome.criu_log_excerpt and "Connected TCP socket" in outcome.criu_log_excerpt


def test_the_reader_refuses_what_is_not_a_criu_log(
    task_dir: Path, reader: CriuLogReader, caplog: pytest.LogCaptureFixture
) -> None:
    client = SocketCriuLogs(reader.socket_path)
    (task_dir / OTHER / "criu-dump.log").symlink_to(task_dir / OTHER / "config.json")
    caplog.set_level(logging.INFO)
    for named in (
        task_dir / ID / "config.json",
        task_dir / OTHER / "criu-dump.log",
        Path("/etc/shadow"),
    ):
        assert client.read(str(named)) is None
    assert "hunter2" not in caplog.text
    assert reader.answer(b"no newline").startswith(b"no ")
    assert reader.answer(f"{task_dir}/{ID}/criu-dump.log\n".encode()).startswith(b"ok\n")


def test_without_a_reader_the_agent_gets_no_log(tmp_path: Path) -> None:
    outcome = _classify("/run/x/" + ID + "/criu-dump.log", SocketCriuLogs(tmp_path / "none.sock"))
    assert (outcome.reason, outcome.criu_log_excerpt) == ("RuntimeError", None)


def test_the_agents_flags_pick_one_source(tmp_path: Path) -> None:
    assert isinstance(criu_log_source(tmp_path / "s.sock", ()), SocketCriuLogs)
    assert criu_log_source(None, (tmp_path,)) == LocalCriuLogs((tmp_path,))
    assert criu_log_source(None, ()) is None
    with pytest.raises(ConfigError):
        criu_log_source(tmp_path / "s.sock", (tmp_path,))
