"""Malicious and broken archives: a one-line error or a partial report with warnings, never a
traceback, never a write, bounded work. Each archive is built here from real sample members."""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
from pathlib import Path

import pytest
import zstandard
from tests.analysis.hostile_archives import (
    entry,
    members,
    replace,
    small_members,
    tar_bytes,
    write_tar,
)

from forensic_checkpoint.analysis import AnalyzerOptions
from forensic_checkpoint.analysis.commands.analyzer import run_analysis
from forensic_checkpoint.analysis.format.contents import ArchiveLimits
from forensic_checkpoint.analysis.model.report import Report
from forensic_checkpoint.cli.main import main
from forensic_checkpoint.errors import (
    ArchiveError,
    ArchiveLimitError,
    EncryptedArchiveError,
    MemberNotFoundError,
)

OPTS = AnalyzerOptions(read_process_memory=False)


def analyze_at(path: Path, limits: ArchiveLimits | None = None) -> Report:
    return run_analysis(path, OPTS, limits or ArchiveLimits())


def snapshot(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


def test_traversal_and_absolute_names_are_skipped_not_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = write_tar(
        work / "a.tar",
        [
            *small_members(),
            entry("../../escape.txt", b"x"),
            entry("/etc/cron.d/evil", b"y"),
            entry("checkpoint/../../up.img", b"z"),
        ],
    )
    before = snapshot(tmp_path)
    report = analyze_at(path)
    assert snapshot(tmp_path) == before
    text = " ".join(report.warnings)
    assert "../../escape.txt" in text and "/etc/cron.d/evil" in text and "up.img" in text
    assert "escape.txt" not in report.archive.members
    assert len(report.processes) == 3  # the real content is still analysed


def test_links_that_escape_are_reported_not_followed(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "a.tar",
        [
            *small_members(),
            entry("checkpoint/parent", type=tarfile.SYMTYPE, linkname="../../../../etc"),
            entry("checkpoint/shadow", type=tarfile.LNKTYPE, linkname="/etc/shadow"),
        ],
    )
    report = analyze_at(path)
    assert any("symlink 'checkpoint/parent' points outside" in w for w in report.warnings)
    assert any("hardlink 'checkpoint/shadow'" in w for w in report.warnings)


def test_device_and_fifo_members_are_skipped(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "a.tar",
        [
            *small_members(),
            entry("checkpoint/sda", type=tarfile.BLKTYPE),
            entry("checkpoint/tty", type=tarfile.CHRTYPE),
            entry("spec.fifo", type=tarfile.FIFOTYPE),
        ],
    )
    report = analyze_at(path)
    skipped = [w for w in report.warnings if "device/FIFO" in w]
    assert len(skipped) == 3
    assert "checkpoint/sda" not in report.archive.members


def test_outer_decompression_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    zeros = tar_bytes([entry("checkpoint/pages-1.img", b"\0" * (8 << 20))])
    bomb = tmp_path / "bomb.tar"
    bomb.write_bytes(zstandard.ZstdCompressor(level=3).compress(zeros))
    assert bomb.stat().st_size < 4096
    with pytest.raises(ArchiveLimitError, match="decompression bomb"):
        analyze_at(bomb, ArchiveLimits(max_total_bytes=1 << 20))


def test_nested_rootfs_bomb_gives_a_partial_report(tmp_path: Path) -> None:
    inner = gzip.compress(tar_bytes([entry("big", b"\0" * (4 << 20))]))
    path = write_tar(tmp_path / "a.tar", [*small_members(), entry("rootfs-diff.tar", inner)])
    report = analyze_at(path, ArchiveLimits(max_inner_bytes=256 << 10))
    assert any("rootfs-diff.tar expands to more than" in w for w in report.warnings)
    assert report.processes  # the rest of the report is intact


def test_nested_tar_inside_rootfs_is_listed_not_opened(tmp_path: Path) -> None:
    nested = tar_bytes([entry("deeper/secret", b"s")])
    inner = tar_bytes([entry("opt/payload.tar", nested)])
    path = write_tar(tmp_path / "a.tar", [*small_members(), entry("rootfs-diff.tar", inner)])
    report = analyze_at(path)
    assert [e.path for e in report.rootfs.changed] == ["/opt/payload.tar"]


def test_rootfs_entry_with_traversal_stops_the_listing(tmp_path: Path) -> None:
    inner = tar_bytes([entry("etc/ok", b"1"), entry("../../../root/.bashrc", b"2")])
    path = write_tar(tmp_path / "a.tar", [*small_members(), entry("rootfs-diff.tar", inner)])
    report = analyze_at(path)
    assert [e.path for e in report.rootfs.changed] == ["/etc/ok"]
    assert any("unsafe entry" in w for w in report.warnings)


def test_absurd_member_count(tmp_path: Path) -> None:
    many = [entry(f"checkpoint/x-{i}.img", b"") for i in range(300)]
    path = write_tar(tmp_path / "a.tar", many)
    with pytest.raises(ArchiveLimitError, match="more than 100 members"):
        analyze_at(path, ArchiveLimits(max_members=100))


def test_oversized_member_is_not_read(tmp_path: Path) -> None:
    items = replace(small_members(), "spec.dump", b"{" + b" " * (300 << 10) + b"}")
    path = write_tar(tmp_path / "a.tar", items)
    report = analyze_at(path, ArchiveLimits(max_member_bytes=256 << 10))
    assert any("spec.dump" in w and "limit" in w for w in report.warnings)
    assert report.container.args == []


def test_truncated_archive_gives_partial_report(tmp_path: Path) -> None:
    whole = write_tar(tmp_path / "whole.tar", [i for i in members() if "pages-2" not in i[0].name])
    data = whole.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) * 3 // 4])
    report = analyze_at(cut)
    assert any("truncated or damaged" in w for w in report.warnings)


def test_truncated_zstd_archive(tmp_path: Path) -> None:
    whole = write_tar(tmp_path / "w.tar.zst", small_members(), compress="zstd")
    cut = tmp_path / "cut.tar.zst"
    cut.write_bytes(whole.read_bytes()[:-200])
    report = analyze_at(cut)
    assert any("truncated or damaged" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (os.urandom(4096), "not a"),
        (b"\x28\xb5\x2f\xfd" + os.urandom(512), "not a"),
        (b"\x1f\x8b" + os.urandom(512), "not a"),
    ],
)
def test_garbage_is_a_one_line_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "g.tar"
    path.write_bytes(content)
    with pytest.raises(ArchiveError, match=message) as info:
        analyze_at(path)
    assert "\n" not in info.value.message


def test_missing_checkpoint_directory(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "a.tar", [(i, d) for i, d in small_members() if "checkpoint" not in i.name]
    )
    with pytest.raises(ArchiveError, match="no checkpoint/ directory"):
        analyze_at(path)


def test_age_encrypted_archive(tmp_path: Path) -> None:
    path = tmp_path / "a.tar.age"
    path.write_bytes(b"age-encryption.org/v1\n-> X25519 abc\n---\n" + os.urandom(64))
    with pytest.raises(EncryptedArchiveError, match="age-encrypted"):
        analyze_at(path)


def test_wrong_magic_and_garbage_images_become_warnings(tmp_path: Path) -> None:
    items = small_members()
    pstree = next(d for i, d in items if i.name == "checkpoint/pstree.img")
    items = replace(items, "checkpoint/core-1.img", pstree)  # valid image, wrong kind
    items = replace(items, "checkpoint/files.img", b"\x19\x43\x56\x54" + os.urandom(100))
    items = replace(
        items,
        "checkpoint/mm-6.img",
        struct.pack("<II", 0x54564319, 0x57492820) + b"\xff\xff\xff\x7f",
    )
    items = replace(items, "stats-dump", b"\x00")
    path = write_tar(tmp_path / "a.tar", items)
    report = analyze_at(path)
    text = " | ".join(report.warnings)
    assert "core-1.img: wrong magic PSTREE, expected CORE" in text
    assert "files.img" in text
    assert "mm-6.img" in text
    assert "stats-dump" in text
    assert report.dump_stats is None
    assert [p.pid for p in report.processes] == [1, 6, 7]


def test_duplicate_members_keep_the_first(tmp_path: Path) -> None:
    fake_spec = b'{"process": {"args": ["evil"]}}'
    path = write_tar(tmp_path / "a.tar", [*small_members(), entry("spec.dump", fake_spec)])
    report = analyze_at(path)
    assert report.container.args[0] == "bash"
    assert any("duplicate member 'spec.dump'" in w for w in report.warnings)


def test_hostile_memory_ranges_do_not_blow_up(tmp_path: Path) -> None:
    """An mm image that claims a 1 TiB argv area: argv is cut, not allocated."""
    from forensic_checkpoint.analysis.format.criu_images import decode, pb2

    items = list(members())
    mm_raw = next(d for i, d in items if i.name == "checkpoint/mm-6.img")
    mm = decode("MM", mm_raw).entries[0]
    mm.mm_arg_end = mm.mm_arg_start + (1 << 40)
    body = mm.SerializeToString()
    assert pb2("mm_pb2")
    blob = mm_raw[:8] + struct.pack("<I", len(body)) + body
    path = write_tar(tmp_path / "a.tar", replace(items, "checkpoint/mm-6.img", blob))
    report = run_analysis(path, AnalyzerOptions(), ArchiveLimits())
    proc = report.process(6)
    assert proc is not None
    assert any("argv of pid 6" in w for w in report.warnings)
    assert proc.cmdline == []


def test_show_file_refuses_what_is_not_there(tmp_path: Path) -> None:
    from forensic_checkpoint.analysis.commands.show_file import show_file

    path = write_tar(tmp_path / "a.tar", small_members())
    with pytest.raises(MemberNotFoundError):
        show_file(path, "/etc/shadow", lambda _b: None)
    with pytest.raises(MemberNotFoundError):
        show_file(path, "/../../etc/passwd", lambda _b: None)


def test_cli_prints_one_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.tar"
    path.write_bytes(os.urandom(2048))
    assert main(["analyze", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("forensic-checkpoint analyze: error:")
    assert "Traceback" not in err


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(tmp_path / "nope.tar")]) == 1
    assert "cannot open" in capsys.readouterr().err


def test_gzip_outer_archive_is_read(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "a.bin", small_members(), compress="gzip")
    report = analyze_at(path)
    assert report.archive.compression == "gzip"
    assert [p.pid for p in report.processes] == [1, 6, 7]


def test_inner_zstd_rootfs_is_read(tmp_path: Path) -> None:
    inner = zstandard.ZstdCompressor().compress(tar_bytes([entry("etc/motd", b"hi")]))
    path = write_tar(tmp_path / "a.tar", [*small_members(), entry("rootfs-diff.tar", inner)])
    report = analyze_at(path)
    assert report.rootfs.format == "tar+zstd"
    assert [e.path for e in report.rootfs.changed] == ["/etc/motd"]
    _ = io  # keep the import for readers building corpora interactively


def test_absurd_thread_list_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pstree entry claiming 5000 threads (cap lowered to 100 to keep the test fast)."""
    from forensic_checkpoint.analysis.format.criu_images import decode
    from forensic_checkpoint.analysis.sections import processes

    monkeypatch.setattr(processes, "MAX_THREADS", 100)
    items = small_members()
    raw = next(d for i, d in items if i.name == "checkpoint/pstree.img")
    image = decode("PSTREE", raw)
    body = b""
    for task in image.entries:
        if task.pid == 6:
            task.threads.extend(range(100_000, 105_000))
        blob = task.SerializeToString()
        body += struct.pack("<I", len(blob)) + blob
    path = write_tar(tmp_path / "a.tar", replace(items, "checkpoint/pstree.img", raw[:8] + body))
    report = analyze_at(path)
    proc = report.process(6)
    assert proc is not None and len(proc.threads) == 100
    assert any("5001 threads; 100 kept" in w for w in report.warnings)


def test_dump_log_without_newlines_is_read_in_bounded_pieces(tmp_path: Path) -> None:
    log = (
        b"(00.000001) Version: 4.2\n" + b"A" * (3 << 20) + b"\n(00.1) Dumping finished successfully"
    )
    path = write_tar(tmp_path / "a.tar", [*small_members(), entry("dump.log", log)])
    report = analyze_at(path)
    assert report.dump_log is not None
    assert report.dump_log.succeeded and report.dump_log.criu_version == "4.2"
    assert all(len(line) <= 1000 for line in report.dump_log.tail.split("\n"))


def test_sparse_ghost_file_cannot_claim_terabytes() -> None:
    """A ghost chunk at offset 2**40 would make a naive reader allocate a terabyte of zeros."""
    from forensic_checkpoint.analysis.format.criu_images import decode, magic_values, pb2
    from forensic_checkpoint.errors import ImageError

    ghost_pb2 = pb2("ghost_file_pb2")
    head = ghost_pb2.ghost_file_entry(uid=0, gid=0, mode=0o100644, chunks=True, size=1 << 41)
    chunk = ghost_pb2.ghost_chunk_entry(off=1 << 40, len=4)
    data = struct.pack("<II", 0x54564319, magic_values()["GHOST_FILE"])
    for msg, payload in ((head, b""), (chunk, b"evil")):
        body = msg.SerializeToString()
        data += struct.pack("<I", len(body)) + body + payload
    with pytest.raises(ImageError, match="ghost file content exceeds"):
        decode("GHOST_FILE", data)
