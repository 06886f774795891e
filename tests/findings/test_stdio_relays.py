"""Where a process's stdio leads, on a real archive: ``server 2>&1 | tee logfile`` with a client
connected to the server is not a process talking to the network (issue 16's first false
positive), and the relay rules still follow real relays.

No committed archive holds a server with an accepted client: counter-blog-containerd is
``counter.py 2>&1 | tee logfile`` with counter.py listening on 8088 and no client. The edit
adds what the kernel and CRIU write when a client connects and the server keeps the
connection: an ESTABLISHED inet socket accepted on 8088 (a copy of the listener with the
client's address, as accept() creates it), fd 4 of counter.py on it, and its tcp-stream
image (queue state, copied from attack-revshell's real established socket).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from pathlib import Path

from pycriu.images import fdinfo_pb2, sk_inet_pb2
from tests.factories import criu_image, edited_sample, image_records

from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.analysis.model.report import Report

SAMPLE = "counter-blog-containerd"
SERVER_PID, SERVER_FILES_ID, TEE_PID = 7, 3, 8
TCP_ESTABLISHED = 1
NEW_ID, NEW_INO = 90, 190001


def _ip(text: str) -> int:
    # CRIU stores IPv4 addresses as one u32 in network byte order, read little-endian
    return int(struct.unpack("<I", ipaddress.IPv4Address(text).packed)[0])


def _tcp_stream(directory: Path) -> bytes:
    """The tcp-stream image of attack-revshell's real established socket (queues empty)."""
    import tarfile

    from tests.factories import plain_sample

    with tarfile.open(plain_sample("attack-revshell", directory)) as tar:
        member = tar.extractfile("checkpoint/tcp-stream-326a9.img")
        assert member is not None
        return member.read()


def with_connection(
    directory: Path, *, local_port: int, remote: tuple[str, int]
) -> Callable[[dict[str, bytes]], None]:
    """An edit giving counter.py (pid 7) a connected TCP socket as fd 4."""
    stream = _tcp_stream(directory)

    def edit(members: dict[str, bytes]) -> None:
        magic, records = image_records(members["checkpoint/files.img"])
        entries = [fdinfo_pb2.file_entry.FromString(r) for r in records]
        listener = next(e for e in entries if e.type == fdinfo_pb2.INETSK)
        isk = sk_inet_pb2.inet_sk_entry()
        isk.CopyFrom(listener.isk)  # accept() copies the listener's options
        isk.id, isk.ino, isk.state, isk.backlog = NEW_ID, NEW_INO, TCP_ESTABLISHED, 0
        isk.src_port, isk.dst_port = local_port, remote[1]
        del isk.src_addr[:], isk.dst_addr[:]
        isk.src_addr.append(_ip("10.86.0.2"))  # the pod's address (sample README)
        isk.dst_addr.append(_ip(remote[0]))
        entry = fdinfo_pb2.file_entry(type=fdinfo_pb2.INETSK, id=NEW_ID, isk=isk)
        records.append(entry.SerializeToString())
        members["checkpoint/files.img"] = criu_image(magic, records)
        name = f"checkpoint/fdinfo-{SERVER_FILES_ID}.img"
        magic, records = image_records(members[name])
        fd = fdinfo_pb2.fdinfo_entry(id=NEW_ID, flags=0, type=fdinfo_pb2.INETSK, fd=4)
        members[name] = criu_image(magic, [*records, fd.SerializeToString()])
        members[f"checkpoint/tcp-stream-{NEW_INO:x}.img"] = stream

    return edit


def _analyse(tmp_path: Path, **connection: object) -> Report:
    edit = with_connection(tmp_path, **connection)  # type: ignore[arg-type]
    return analyze(edited_sample(SAMPLE, tmp_path, edit), AnalyzerOptions())


def test_tee_behind_a_server_with_an_inbound_client_is_not_on_a_socket(tmp_path: Path) -> None:
    report = _analyse(tmp_path, local_port=8088, remote=("10.86.0.1", 51234))
    client = next(s for s in report.sockets if s.state == "ESTABLISHED")
    assert [h.pid for h in client.held_by] == [SERVER_PID]  # the shape is there
    assert [p.comm for p in report.processes if p.pid == TEE_PID] == ["tee"]
    assert [f.id for f in report.findings if f.severity != "info"] == []
    assert report.connections.stdio_chains == []


def test_an_outbound_connection_at_the_pipe_s_other_end_makes_no_non_shell_a_relay(
    tmp_path: Path,
) -> None:
    """The same pipe, but counter.py made the connection itself (to port 4444, from a port it
    does not listen on), as an app with a database or log-shipping connection does: tee is
    still no relay. Pipes are followed for shells only (connections.py); a shell at the end of
    such a pipe is the mkfifo relay that test_findings_samples and the corpus catch."""
    report = _analyse(tmp_path, local_port=41000, remote=("10.86.0.1", 4444))
    assert [f for f in report.findings if f.rule in ("stdio-socket", "reverse-shell")] == []
