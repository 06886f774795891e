"""Ground truth from /proc: the container's processes by their namespace pids, their fds and
TCP peers, and each expectation resolved to one process whose path and remote are real."""

from __future__ import annotations

from pathlib import Path

import pytest

from forensic_checkpoint_dev.corpus import procfs, truth
from forensic_checkpoint_dev.corpus.model import Expect, Scenario, Select

#: one established connection 10.88.0.7:40000 -> 10.88.0.1:4441 (inode 555), a listener
NET_TCP = """  sl  local_address rem_address   st tx_queue rx_queue ... inode
   0: 0700580A:9C40 0100580A:1161 01 00000000:00000000 00:00000000 00000000     0        0 555 1
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 556 1
"""


def _proc(  # noqa: PLR0917 - a /proc entry's fields, in /proc's order
    root: Path, host: int, ns: int, ppid: int, argv: list[str], exe: str, **fds: str
) -> None:
    d = root / str(host)
    (d / "ns").mkdir(parents=True)
    (d / "fd").mkdir()
    (d / "ns" / "pid").symlink_to("pid:[4026532999]" if ns else "pid:[4026531836]")
    (d / "exe").symlink_to(exe)
    (d / "status").write_text(f"Name:\tx\nPPid:\t{ppid}\nUid:\t0\t0\t0\t0\nNSpid:\t{host}\t{ns}\n")
    # the kernel names a process exec'd from /proc/self/fd/3 "3"
    (d / "comm").write_text(("3" if exe.startswith("/memfd:") else Path(argv[0]).name) + "\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "environ").write_bytes(b"HISTFILE=/dev/null\0SECRET=x\0")
    (d / "maps").write_text(f"7f00-7f01 r-xp 0 08:01 1 {exe}\n")
    (d / "net").mkdir()
    (d / "net" / "tcp").write_text(NET_TCP)
    for fd, target in fds.items():
        (d / "fd" / fd.removeprefix("fd")).symlink_to(target)


@pytest.fixture
def proc_root(tmp_path: Path) -> Path:
    _proc(tmp_path, 100, 1, 50, ["sleep", "infinity"], "/usr/bin/sleep")
    _proc(tmp_path, 101, 7, 100, ["bash", "-i"], "/usr/bin/bash",
          fd0="socket:[555]", fd1="socket:[555]", fd2="socket:[555]")  # fmt: skip
    _proc(tmp_path, 102, 9, 100, ["[kworker/u4:2]", "3600"], "/memfd:kworker (deleted)",
          fd3="/memfd:kworker (deleted)")  # fmt: skip
    _proc(tmp_path, 200, 0, 1, ["containerd"], "/usr/bin/containerd")  # another namespace
    return tmp_path


def test_snapshot_has_namespace_pids_argv_fds_and_peers(proc_root: Path) -> None:
    procs = procfs.snapshot(100, proc_root)
    assert [(p.pid, p.ppid, p.comm) for p in procs] == [(1, 0, "sleep"), (7, 1, "bash"),
                                                        (9, 1, "3")]  # fmt: skip
    bash = procs[1]
    assert bash.argv == ["bash", "-i"]
    assert bash.fds == {0: "socket:[555]", 1: "socket:[555]", 2: "socket:[555]"}
    assert {(t.fd, t.local, t.remote, t.state) for t in bash.tcp} == {
        (fd, "10.88.0.7:40000", "10.88.0.1:4449", "ESTABLISHED") for fd in (0, 1, 2)
    }
    assert bash.env == {"HISTFILE": "/dev/null", "SECRET": ""}  # secret values never kept
    assert bash.maps == ["/usr/bin/bash"]


def test_parse_net_tcp_reads_ipv6_mapped_addresses() -> None:
    line = ("  0: 0000000000000000FFFF00000100580A:1F90 0000000000000000FFFF00000700580A:9C40 "
            "01 0:0 0:0 0 0 0 777 1")  # fmt: skip
    assert procfs.parse_net_tcp("header\n" + line) == {
        "777": ("10.88.0.1:8080", "10.88.0.7:40000", "ESTABLISHED")
    }


def _values() -> dict[str, str]:
    return truth.placeholders("10.88.0.1", 4449, None)


def test_an_expectation_resolves_to_one_process_with_its_real_remote(proc_root: Path) -> None:
    procs = procfs.snapshot(100, proc_root)
    shell = Expect("reverse-shell", Select("bash", "^bash -i$"), remote="@HOST@:@PORT@")
    got = truth.resolve(shell, procs, _values())
    assert got == {"rules": ["reverse-shell"], "pid": 7, "process": "bash: bash -i",
                   "remote": "10.88.0.1:4449"}  # fmt: skip
    memfd = Expect("memfd-exec", Select(argv=r"^\[kworker"), path="memfd:kworker")
    assert truth.resolve(memfd, procs, _values())["path"] == "memfd:kworker"


@pytest.mark.parametrize(
    ("expect", "error"),
    [
        (Expect("x", Select(argv=".")), "3 processes match"),
        (Expect("x", Select("nc")), "0 processes match"),
        (Expect("x", Select("bash"), path="/tmp/x"), "has no /tmp/x"),
        (Expect("x", Select("bash"), remote="10.88.0.1:1"), "connected to 10.88.0.1:1"),
        (Expect("x", Select("sleep"), remote="@HOST@:@PORT@"), "connected to 10.88.0.1:4449"),
    ],
)
def test_a_truth_that_proc_does_not_confirm_is_refused(
    proc_root: Path, expect: Expect, error: str
) -> None:
    with pytest.raises(truth.TruthError, match=error):
        truth.resolve(expect, procfs.snapshot(100, proc_root), _values())


def test_a_shell_whose_stdio_reaches_the_remote_through_a_relay_has_it(tmp_path: Path) -> None:
    _proc(tmp_path, 100, 1, 50, ["sh", "-i"], "/usr/bin/dash",
          fd0="pipe:[71]", fd1="pipe:[72]", fd2="pipe:[72]")  # fmt: skip
    _proc(tmp_path, 101, 2, 50, ["nc", "10.88.0.1", "4449"], "/usr/bin/nc.openbsd",
          fd0="pipe:[72]", fd1="/tmp/f", fd3="socket:[555]")  # fmt: skip
    _proc(tmp_path, 102, 3, 50, ["bash", "-li"], "/usr/bin/bash",
          fd0="/dev/pts/4", fd1="/dev/pts/4", fd2="/dev/pts/4")  # fmt: skip
    _proc(
        tmp_path, 103, 4, 50, ["socat"], "/usr/bin/socat", fd5="/dev/pts/ptmx", fd6="socket:[555]"
    )
    (tmp_path / "103" / "fdinfo").mkdir()
    (tmp_path / "103" / "fdinfo" / "5").write_text("pos:\t0\nflags:\t02\ntty-index:\t4\n")
    procs = procfs.snapshot(100, tmp_path)
    remote = "@HOST@:@PORT@"
    sh = truth.resolve(Expect("reverse-shell", Select("sh"), remote=remote), procs, _values())
    assert (sh["pid"], sh["remote"], sh["relayedBy"]) == (1, "10.88.0.1:4449", 2)
    bash = truth.resolve(Expect("reverse-shell", Select("bash"), remote=remote), procs, _values())
    assert (bash["pid"], bash["relayedBy"]) == (3, 4)


def test_the_truth_file_holds_scenario_expectations_and_processes(proc_root: Path) -> None:
    shell = Expect("reverse-shell", Select("bash"))
    s = Scenario("rev", "attack", "", script="", ready="", expect=(shell,), allow=("network-tool",))
    built = truth.build(s, procfs.snapshot(100, proc_root), _values(), archive={"file": "rev.tar"})
    assert built["kind"] == "attack" and built["archive"] == {"file": "rev.tar"}
    assert built["expected"][0]["pid"] == 7 and built["allowed"] == ["network-tool"]
    assert [p["pid"] for p in built["processes"]] == [1, 7, 9]
    assert built["definition"]["name"] == "rev"
