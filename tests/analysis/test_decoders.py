"""Small decoders where checkpointctl and crit go wrong: IPv6, abstract names, flags, caps."""

from __future__ import annotations

import socket
import struct

import pytest

from forensic_checkpoint.analysis.sections.files import open_flags, unix_name
from forensic_checkpoint.analysis.sections.sockets import inet_address
from forensic_checkpoint.analysis.sections.task_details import capability_names


def words(text: str, family: socket.AddressFamily) -> tuple[int, ...]:
    raw = socket.inet_pton(family, text)
    return struct.unpack(f"<{len(raw) // 4}I", raw)


@pytest.mark.parametrize(
    "address",
    ["::1", "fe80::1:2", "2001:db8::8a2e:370:7334", "::ffff:10.86.0.2", "::"],
)
def test_ipv6_addresses_round_trip(address: str) -> None:
    """go-criu v8.2 (checkpointctl 1.5) wrote every IPv6 word into bytes 0-3."""
    got = inet_address(words(address, socket.AF_INET6), 10)
    assert got is not None
    assert socket.inet_pton(socket.AF_INET6, got) == socket.inet_pton(socket.AF_INET6, address)
    assert got == socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address))


@pytest.mark.parametrize("address", ["127.0.0.1", "10.86.0.1", "0.0.0.0", "255.255.255.255"])  # noqa: S104
def test_ipv4_addresses(address: str) -> None:
    assert inet_address(words(address, socket.AF_INET), 2) == address


def test_unix_names() -> None:
    assert unix_name(b"\0multiproc-ctl") == "@multiproc-ctl"
    assert unix_name(b"/run/app.sock\0") == "/run/app.sock"
    assert unix_name(b"") == ""
    assert "\0" not in unix_name(b"\0a\0b")


def test_open_flags() -> None:
    assert open_flags(0) == "O_RDONLY"
    assert open_flags(0o2 | 0o2000 | 0o2000000) == "O_RDWR|O_APPEND|O_CLOEXEC"
    assert open_flags(0o1 | 0o100 | 0o1000) == "O_WRONLY|O_CREAT|O_TRUNC"


def test_capability_names() -> None:
    assert capability_names([1 << 21]) == ["CAP_SYS_ADMIN"]
    assert capability_names([0, 1 << 8]) == ["CAP_CHECKPOINT_RESTORE"]  # cap 40
    assert capability_names([0, 1 << 20]) == ["CAP_52"]  # unknown caps keep their number


def test_socket_kinds_the_samples_lack() -> None:
    """UDP over IPv6, a packet sniffer and a netlink socket, built from CRIU's own messages."""
    from forensic_checkpoint.analysis.format.criu_images import pb2
    from forensic_checkpoint.analysis.model.report import Holder
    from forensic_checkpoint.analysis.sections.files import FileTable
    from forensic_checkpoint.analysis.sections.sockets import build_sockets, socket_label

    fd = pb2("fdinfo_pb2")
    udp6 = fd.file_entry(type=4, id=1)
    udp6.isk.id, udp6.isk.ino, udp6.isk.family, udp6.isk.type, udp6.isk.proto = 1, 101, 10, 2, 17
    udp6.isk.state, udp6.isk.src_port, udp6.isk.dst_port = 7, 5353, 0
    udp6.isk.src_addr.extend(words("fe80::1", socket.AF_INET6))
    udp6.isk.dst_addr.extend(words("::", socket.AF_INET6))
    sniffer = fd.file_entry(type=10, id=2)
    sniffer.psk.id, sniffer.psk.type, sniffer.psk.protocol, sniffer.psk.ifindex = 2, 3, 0x0300, 2
    netlink = fd.file_entry(type=13, id=3)
    netlink.nlsk.id, netlink.nlsk.ino, netlink.nlsk.protocol, netlink.nlsk.portid = 3, 103, 0, 77
    table = FileTable(entries={1: udp6, 2: sniffer, 3: netlink})
    holders = {1: [Holder(pid=5, fd=3)], 2: [Holder(pid=6, fd=4)], 3: [Holder(pid=6, fd=5)]}
    got = {s.id: s for s in build_sockets(table, {}, holders, [])}
    assert (got[1].family, got[1].protocol, got[1].state) == ("inet6", "udp", "UNCONNECTED")
    assert (got[1].local_address, got[1].local_port) == ("fe80::1", 5353)
    assert socket_label(got[1]) == "udp fe80::1:5353 UNCONNECTED"
    assert (got[2].family, got[2].type, got[2].protocol) == ("packet", "raw", "0x0300")
    assert got[2].pid == 6 and got[2].local_address == "ifindex 2"
    assert (got[3].family, got[3].protocol, got[3].local_port) == ("netlink", "route", 77)
