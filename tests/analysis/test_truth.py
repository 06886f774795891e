"""Every claim of each sample's truth.json, checked against the report of the real archive."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from tests.analysis.sample_data import revealed, sample_path, truth

from forensic_checkpoint.analysis.commands.show_file import show_file
from forensic_checkpoint.analysis.model.process import OpenFile
from forensic_checkpoint.analysis.model.report import Report


def test_archive_identity(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    path = sample_path(sample)
    assert report.archive.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.archive.size_bytes == path.stat().st_size
    assert report.archive.compression == "zstd"
    members = {m["name"].rstrip("/") for m in t["archive"]["members"]}
    assert set(report.archive.members) == members
    expected_engine = (
        "containerd"
        if "containerd" in sample or sample.startswith("attack")
        else "cri-o"
        if "crio" in sample
        else "podman"
    )
    assert report.archive.engine == expected_engine


def test_container_identity(sample: str) -> None:
    c, t = revealed(sample).container, truth(sample)["container"]
    assert c.id == t["id"]
    assert c.image == t["image_name"]
    assert c.image_id == t["image_id"]
    assert c.runtime == t["oci_runtime_in_config_dump"]
    assert c.created_at == t["created"]
    assert c.hostname == t["hostname_uts"]
    assert c.domainname == t["domainname_uts"]
    assert c.args == t["spec_args"]
    assert c.cwd == t["spec_cwd"]
    assert c.config_name == t["name"]
    if t.get("checkpointed_time_in_config_dump"):
        assert c.checkpointed_at == t["checkpointed_time_in_config_dump"]
    else:
        assert c.checkpointed_at is not None  # from the checkpoint/ directory's mtime
    k8s = t.get("kubernetes_from_annotations")
    if k8s:
        assert c.pod == t["pod_name"]
        assert c.namespace == t["pod_namespace"]
        assert c.pod_uid == t["pod_uid"]
        assert c.name == t["kubernetes_container_name"]
    else:  # podman writes no Kubernetes names into the archive
        assert c.namespace is None
        assert c.name == t["name"]
    ip = t.get("container_ip") or (t.get("pod_ip") if "cri-o" in str(t) else None)
    if "container_ip" in t:
        assert c.ip == t["container_ip"]
    elif ip and revealed(sample).archive.engine == "cri-o":
        assert c.ip == ip
    for key, value in (t.get("spec_annotations") or {}).items():
        assert c.annotations[key] == value
    spec_env = [f"{e.name}={e.value}" for e in c.spec_env]
    assert spec_env == t["spec_env"]
    full = truth(sample)
    if "containerd_status_file" in full:  # containerd: host PID and kubelet metadata
        assert c.host_pid == full["containerd_status_file"]["Pid"]
        assert c.host_pid == t["host_pid_of_container_init_in_status_file"]
        status_dump = full["status_dump"]
        assert c.log_path == status_dump["log_path"]
        for key, value in status_dump["labels"].items():
            assert c.labels[key] == value
        for key, value in status_dump["annotations"].items():
            assert c.annotations[key] == value
    else:
        assert c.host_pid is None


def test_process_tree(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    assert [p.pid for p in report.processes] == [p["pid"] for p in t["processes"]]
    for want in t["processes"]:
        got = report.process(want["pid"])
        assert got is not None
        assert (got.ppid, got.pgid, got.sid) == (want["ppid"], want["pgid"], want["sid"])
        assert got.comm == want["comm"]
        assert got.state == "alive"
        assert [(th.tid, th.comm) for th in got.threads] == [
            (th["tid"], th["comm"]) for th in want["threads"]
        ]
        assert got.cmdline == want["cmdline"]
        assert [f"{e.name}={e.value}" for e in got.env] == want["environ"]
        assert got.exe == (want.get("exe_resolved") or want["exe"])
        assert got.cwd == want["cwd"]


def _crit_fd(f: OpenFile, report: Report) -> str:
    """Render one of our open files the way `crit x fds` (the truth's source) does."""
    if f.type == "REG":
        return f"{f.fd}: {f.path}"
    if f.type == "PIPE":
        return f"{f.fd}: pipe[{f.path.removeprefix('pipe:[').removesuffix(']')}]"
    if f.type == "UNIXSK":
        sock = next(s for s in report.sockets if s.id == f.file_id)
        name = sock.local_address or ""
        crit_name = ("=00" + name[1:]) if name.startswith("@") else name
        tail = f" {crit_name}" if crit_name else ""
        return f"{f.fd}: unix[{sock.inode} ({sock.peer_inode or 0}){tail}]"
    return f"{f.fd}: {f.type}.{f.file_id}"


def test_open_files(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    for want in t["processes"]:
        got = report.process(want["pid"])
        assert got is not None
        assert [_crit_fd(f, report) for f in got.open_files] == want["fds"]


def test_sockets(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    assert len(report.sockets) == len(t["sockets"])
    for want in t["sockets"]:
        got = next(s for s in report.sockets if s.inode == want["ino"])
        assert got.id == want["files_img_id"]
        assert [(h.pid, h.fd) for h in got.held_by] == [
            (h["pid"], h["fd"]) for h in want["held_by"]
        ]
        assert got.state == want["state"]
        if want["kind"] == "tcp":
            assert got.family == ("inet6" if want["family"] == "INET6" else "inet")
            assert got.protocol == "tcp"
            assert f"{got.local_address}:{got.local_port}" == want["src"]
            assert f"{got.remote_address}:{got.remote_port}" == want["dst"]
            stream = want.get("tcp_stream")
            if stream:
                assert got.receive_queue is not None and got.send_queue is not None
                assert got.receive_queue.size_bytes == stream["inq_len"]
                assert got.receive_queue.text == stream["inq_data"]
                assert got.send_queue.size_bytes == stream["outq_len"]
                assert got.send_queue.text == stream["outq_data"]
        else:
            assert got.family == "unix"
            assert got.type == want["type"].lower()
            assert (got.local_address or "") == want["name"]
            assert (got.peer_inode or 0) == want["peer_ino"]


def test_socket_and_pipe_queues(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    for want in t["unix_socket_queues"]:
        sock = next(s for s in report.sockets if s.id == want["id_for"])
        assert sock.inode == want["queued_on_socket_ino"]
        assert sock.receive_queue is not None
        assert sock.receive_queue.size_bytes == want["length"]
        assert sock.receive_queue.text == want["data"]
    for want in t["pipe_buffers"]:
        pipe = next(p for p in report.pipes if p.id == want["pipe_id"])
        if want["bytes"]:
            assert pipe.buffered is not None
            assert pipe.buffered.size_bytes == want["bytes"]
            assert pipe.buffered.text == want["data"]
        else:
            assert pipe.buffered is None or pipe.buffered.size_bytes == 0


def test_deleted_open_files(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    flagged = [(p.pid, f) for p in report.processes for f in p.open_files if f.deleted]
    assert len(flagged) == sum(len(d["held_by"]) for d in t["deleted_open_files"])
    for want in t["deleted_open_files"]:
        for holder in want["held_by"]:
            proc = report.process(holder["pid"])
            assert proc is not None
            f = next(f for f in proc.open_files if f.fd == holder["fd"])
            assert f.deleted and f.path == want["path"]
            assert f.file_id == want["orig_files_img_id"]
            assert f.ghost is not None
            assert f.ghost.image == want["ghost_image"]
            assert f.ghost.preview == want["content"]
            assert f.ghost.mode == want["mode"]
        chunks: list[bytes] = []
        source = show_file(sample_path(sample), want["path"], chunks.append)
        assert b"".join(chunks).decode() == want["content"]
        assert source.startswith("ghost file")


def test_memory_strings(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    by_pattern = {s.pattern: s for s in report.memory.searches}
    for want in t["memory_strings"]:
        search = by_pattern[want["value"]]
        found = {(m.pid, m.address) for m in search.matches}
        expected = {(o["pid"], o["vaddr"]) for o in want.get("occurrence_list", [])}
        assert found == expected, want["value"]
        assert {pid for pid, _ in found} >= set(want["found_in_pids"])
        for m in search.matches:
            assert m.match == want["value"]
            assert want["value"] in m.context
            assert m.mapping is not None


def test_rootfs_changes(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    rootfs = t["rootfs"]
    assert report.rootfs.present == rootfs["rootfs_diff_tar_present"]
    # every entry of the tar, whether a change or a mount stub (test_mount_stubs.py)
    got = {e.path: e for e in [*report.rootfs.changed, *report.rootfs.mount_stubs]}
    assert set(got) == {e["path"] for e in rootfs["entries"]}
    for want in rootfs["entries"]:
        entry = got[want["path"]]
        assert entry.type == want["type"]
        assert entry.size_bytes == want["size"]
        if "mode" in want:
            assert entry.mode == want["mode"]
        if "sha256" in want:
            assert entry.sha256 == want["sha256"]
        if "content" in want and want["type"] == "file":
            chunks: list[bytes] = []
            show_file(sample_path(sample), want["path"], chunks.append)
            assert b"".join(chunks).decode() == want["content"]
    assert report.rootfs.deleted == sorted(rootfs["deleted_files"]) or (
        report.rootfs.deleted == rootfs["deleted_files"]
    )
    if rootfs.get("rootfs_diff_tar_compression") == "gzip":
        assert report.rootfs.format == "tar+gzip"


def test_log_bind_mounts_network_status(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    log = t["container_log_in_archive"]
    assert report.log is not None
    assert report.log.member == log["member"]
    assert report.log.content == log["content"]
    assert report.bind_mounts == t["bind_mounts_file"]
    raw = t["network_status_file"]
    assert report.network_status == (json.loads(raw) if isinstance(raw, str) else raw)


def test_dump_stats(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    assert report.dump_stats is not None
    got = {k: v for k, v in dataclasses.asdict(report.dump_stats).items() if v is not None}
    assert got == t["criu_stats_dump"]["dump"]


def test_no_warnings_on_real_samples(sample: str) -> None:
    assert revealed(sample).warnings == []


def test_json_contract_keys(sample: str) -> None:
    doc: dict[str, Any] = revealed(sample).to_json_dict()
    for key in ("path", "sha256", "sizeBytes", "engine", "compression"):
        assert key in doc["archive"]
    for key in ("id", "name", "pod", "namespace", "image", "runtime", "hostname"):
        assert key in doc["container"]
    assert {"createdAt", "checkpointedAt"} <= doc["container"].keys()
    for proc in doc["processes"]:
        assert {"pid", "ppid", "comm", "cmdline", "state", "threads", "env", "openFiles"} <= (
            proc.keys()
        )
    for sock in doc["sockets"]:
        assert {
            "pid",
            "family",
            "type",
            "state",
            "localAddress",
            "localPort",
            "remoteAddress",
            "remotePort",
        } <= sock.keys()
    assert {"changed", "deleted"} <= doc["rootfs"].keys()
    for search in doc["memory"]["searches"]:
        assert {"pattern", "matches"} <= search.keys()
        for match in search["matches"]:
            assert re.fullmatch(r"0x[0-9a-f]+", match["address"])
            assert isinstance(match["pid"], int)
    assert "dumpStats" in doc and "warnings" in doc


def test_attack_sample_specifics() -> None:
    """The attacker's traces that checkpointctl misses: memfd exe, RWX mapping, fd 255."""
    report = revealed("attack-revshell")
    memfd_proc = report.process(23)
    assert memfd_proc is not None and memfd_proc.comm == "3"
    assert memfd_proc.exe == "memfd:kworker"
    fd3 = next(f for f in memfd_proc.open_files if f.fd == 3)
    assert (fd3.type, fd3.path) == ("MEMFD", "memfd:kworker")
    marker = next(s for s in report.memory.searches if s.pattern.startswith("EVIL_SHELLCODE"))
    (hit,) = marker.matches
    assert (hit.pid, hit.address) == (24, "0x7f8f504e3040")
    assert hit.mapping == "0x7f8f504e3000-0x7f8f504e7000 rwxp [anon]"
    shell = report.process(14)
    assert shell is not None
    assert [f.fd for f in shell.open_files if f.type == "INETSK"] == [0, 1, 2, 255]
    (memfd,) = report.shared_memory
    kworkerd = next(
        e for e in truth("attack-revshell")["rootfs"]["entries"] if e["path"] == "/tmp/.x/kworkerd"
    )
    assert (memfd.kind, memfd.name, memfd.size_bytes) == ("memfd", "memfd:kworker", 43888)
    assert memfd.sha256 == kworkerd["sha256"]  # the memfd holds a copy of /bin/sleep
    assert "23 fd 3" in memfd.used_by
    miner = report.process(22)
    assert miner is not None and len(miner.cmdline) == 2
    assert "LD_PRELOAD" in {e.name for e in miner.env}


def test_streamed_pages_give_the_same_report(sample: str) -> None:
    """Large compressed archives are not spooled: pages are streamed in a second pass, and
    argv/env come from the ranges the scanner retains. The report must not change."""
    from tests.analysis.sample_data import sample_path

    from forensic_checkpoint.analysis import AnalyzerOptions
    from forensic_checkpoint.analysis.commands.analyzer import run_analysis
    from forensic_checkpoint.analysis.format.contents import ArchiveLimits

    searches = [m["value"] for m in truth(sample)["memory_strings"]]
    streamed = run_analysis(
        sample_path(sample),
        AnalyzerOptions(searches=searches, reveal=True),
        ArchiveLimits(max_spool_bytes=0),
    )
    assert streamed.to_json_dict() == revealed(sample).to_json_dict()


def test_dump_log(sample: str) -> None:
    report, t = revealed(sample), truth(sample)
    if not t["dump_log_in_archive"]:
        assert report.dump_log is None
        return
    log = report.dump_log
    assert log is not None
    assert log.succeeded
    assert log.criu_version is not None and log.criu_version.startswith("4.2")
    assert log.size_bytes == next(
        m["size"] for m in t["archive"]["members"] if m["name"] == "dump.log"
    )
    assert all(") Error " in p or ") Warn " in p for p in log.problems)
