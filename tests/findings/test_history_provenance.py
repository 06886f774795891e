"""Shell history from bash's heap and binary provenance (build-ids, origin)."""

from __future__ import annotations

import struct

import pytest
from tests.findings.findings_samples import BENIGN, analysed, truth

from forensic_checkpoint.analysis.findings.history import recover_history
from forensic_checkpoint.analysis.memory import PageIndex, Pagemap, PagemapEntry, ProcessMemory


def test_attack_history_matches_every_truth_entry() -> None:
    report = analysed("attack-revshell")
    expected = next(
        e
        for e in truth("attack-revshell")["expected_findings"]
        if e["id"] == "bash-history-in-memory"
    )["evidence"]["entries"]
    got = [h for h in report.shell_history if h.pid == 14]
    assert [h.command for h in got] == [e["command"] for e in expected]
    assert [h.address for h in got] == [e["hist_entry_address"] for e in expected]
    assert [h.time for h in got] == [e["time_utc"].replace(" ", "T") + "Z" for e in expected]
    finding = next(f for f in report.findings if f.rule == "shell-history")
    assert finding.evidence.pid == 14
    assert finding.evidence.details["entries"] == "11"


@pytest.mark.parametrize("name", BENIGN)
def test_benign_shells_have_no_history(name: str) -> None:
    # non-interactive bash (entrypoints, bash -c) keeps no history list
    assert analysed(name).shell_history == []


def _heap(
    layout: dict[int, bytes], base: int, size: int
) -> tuple[list[tuple[int, bytes]], ProcessMemory]:
    buf = bytearray(size)
    for at, data in layout.items():
        buf[at - base : at - base + len(data)] = data
    index = PageIndex.build(Pagemap(1, (PagemapEntry(base, size // 4096, 4),)), 4096)
    return [(base, bytes(buf))], ProcessMemory.from_bytes(index, bytes(buf))


def test_history_order_follows_the_history_array_not_the_timestamps() -> None:
    base = 0x10000
    q = struct.Struct("<Q")
    layout = {
        base + 0x100: b"second\0",
        base + 0x120: b"#1700000000\0",  # an older stamp on the later command (clock change)
        base + 0x140: b"first\0",
        base + 0x160: b"#1700000100\0",
        # HIST_ENTRY {line, timestamp, data}
        base + 0x200: q.pack(base + 0x140) + q.pack(base + 0x160) + q.pack(0),
        base + 0x220: q.pack(base + 0x100) + q.pack(base + 0x120) + q.pack(0),
        # the_history: [entry of "first", entry of "second", NULL]
        base + 0x300: q.pack(base + 0x200) + q.pack(base + 0x220) + q.pack(0),
        # a stray stamp without an entry, and a pointer to it from garbage
        base + 0x400: b"#1700000200\0",
    }
    segments, memory = _heap(layout, base, 4096)
    got = recover_history(7, segments, memory)
    assert [h.command for h in got] == ["first", "second"]
    assert got[0].time == "2023-11-14T22:15:00Z"
    assert got[0].address == f"0x{base + 0x200:x}"


def test_history_needs_a_readable_line() -> None:
    base = 0x10000
    q = struct.Struct("<Q")
    layout = {
        base + 0x120: b"#1700000000\0",
        base + 0x220: q.pack(0xDEAD0000) + q.pack(base + 0x120) + q.pack(0),  # line not dumped
    }
    segments, memory = _heap(layout, base, 4096)
    assert recover_history(7, segments, memory) == []


def test_provenance_of_the_attack_binaries() -> None:
    binaries = {b.path: b for b in analysed("attack-revshell").binaries}
    dropped = binaries["/tmp/.x/kworkerd"]
    assert dropped.origin == "rootfs-diff"
    assert dropped.pids == [22]
    assert dropped.sha256 == "4add4bb89d8ca0e3b1bd861130ddd7ae0fd9617a8055de0a38c8d2ca1ac95723"
    assert binaries["memfd:kworker"].origin == "memfd"
    # the build-id research checked against readelf -n of Debian 12's libc6 2.36-9+deb12u14
    libc = binaries["/usr/lib/x86_64-linux-gnu/libc.so.6"]
    assert libc.build_id == "93ac61ec5a8eb1396f9fbd350e3169a558528a40"
    assert libc.origin == "image" and libc.pids == [1, 13, 14, 22, 23, 24]
    assert "/usr/lib/locale/C.utf8/LC_CTYPE" not in binaries  # data, not a binary


@pytest.mark.parametrize("name", BENIGN)
def test_benign_binaries_all_come_from_the_image(name: str) -> None:
    binaries = analysed(name).binaries
    assert binaries
    assert {b.origin for b in binaries} == {"image"}
    assert all(b.build_id for b in binaries if b.path.endswith(".so.6"))
