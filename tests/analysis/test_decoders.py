"""Small decoders where checkpointctl and crit go wrong: IPv6, abstract names, flags, caps."""

from __future__ import annotations

import socket
import struct

import pytest

from forensic_checkpoint.analysis.files import inet_address, open_flags, unix_name
from forensic_checkpoint.analysis.processes import capability_names


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
