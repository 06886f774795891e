"""YARA over real checkpoints: memory per run (addresses from the truth files), memfd and
rootfs-diff content, deleted files, socket and pipe queues; rule loading and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.findings.findings_samples import DATA, truth

from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.analysis.findings import yara_scan
from forensic_checkpoint.analysis.memory import PageIndex, Pagemap, PagemapEntry
from forensic_checkpoint.analysis.model.findings import Finding
from forensic_checkpoint.errors import ConfigError

RULES = """
rule shellcode_marker {
  meta: author = "findings tests" severity = "critical" reference = "attack-revshell truth"
  strings: $sled_marker = { 90 90 90 90 90 90 90 90 45 56 49 4C 5F 53 48 45 4C 4C }
  condition: $sled_marker
}
rule stratum { meta: author = "findings tests" strings: $s = "stratum+tcp://" condition: $s }
rule elf_header { meta: author = "findings tests" condition: uint32(0) == 0x464c457f }
"""
QUEUES = """
rule inflight {
  meta: author = "queue tester" severity = "medium"
  strings:
    $p = "PIPE_INFLIGHT_" $t = "TCP_INFLIGHT_" $u = "UNIX_INFLIGHT_" $g = "GHOST_FILE_MARKER_"
  condition: any of them
}
"""


def _yara(name: str, rules: Path) -> dict[str, Finding]:
    report = analyze(DATA / f"{name}.tar.zst", AnalyzerOptions(yara=[str(rules)]))
    return {f.id: f for f in report.findings if f.rule == "yara"}


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finding]:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "attack.yar").write_text(RULES)
    (folder / "notes.txt").write_text("not a rule file")
    return _yara("attack-revshell", folder)


def test_shellcode_found_in_the_rwx_mapping_with_author(attack: dict[str, Finding]) -> None:
    hit = attack["yara:attack.shellcode_marker:memory:pid 24"]
    expected = next(
        e
        for e in truth("attack-revshell")["expected_findings"]
        if e["id"] == "rwx-anonymous-mapping"
    )["evidence"]
    # the sled's last 8 bytes end where the marker starts
    assert int(hit.evidence.address or "0", 16) == int(expected["address"], 16) - 8
    assert hit.evidence.mapping == "0x7f8f504e3000-0x7f8f504e7000 rwxp [anon]"
    assert hit.severity == "critical"
    assert hit.evidence.details["author"] == "findings tests"
    assert hit.evidence.details["reference"] == "attack-revshell truth"


def test_pool_url_addresses_match_the_truth(attack: dict[str, Finding]) -> None:
    pool = next(
        e for e in truth("attack-revshell")["expected_findings"] if e["id"] == "miner-pool-string"
    )["evidence"]
    in_22 = attack["yara:attack.stratum:memory:pid 22"]
    assert in_22.evidence.address == pool["address"]
    in_14 = attack["yara:attack.stratum:memory:pid 14"]
    assert in_14.evidence.details["offsets"].split(", ") == pool["also_in_pids"]["14"]


def test_memfd_and_dropped_binary_content_are_scanned(attack: dict[str, Finding]) -> None:
    assert "yara:attack.elf_header:shared-memory:memfd memfd:kworker" in attack
    assert attack["yara:attack.elf_header:rootfs-diff:/tmp/.x/kworkerd"].evidence.path == (
        "/tmp/.x/kworkerd"
    )


def test_queues_and_deleted_files(tmp_path: Path) -> None:
    rules = tmp_path / "queues.yara"
    rules.write_text(QUEUES)
    hits = _yara("multi-proc", rules)
    kinds = {f.evidence.details["target"].split(" ")[0] for f in hits.values()}
    assert {"pipe-queue", "socket-queue", "ghost-file"} <= kinds
    ghost = next(f for f in hits.values() if "ghost-file" in f.id)
    assert ghost.evidence.path == "/var/log/app/evidence.log"
    assert all(f.severity == "medium" for f in hits.values())


def test_no_rules_no_scan_and_bad_rules_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        yara_scan.rule_files([tmp_path / "missing.yar"])
    with pytest.raises(ConfigError, match="no rule files"):
        yara_scan.rule_files([tmp_path])
    bad = tmp_path / "bad.yar"
    bad.write_text("rule broken { condition: $undefined }")
    with pytest.raises(ConfigError, match=r"bad\.yar"):
        yara_scan.compile_rules([bad])
    with pytest.raises(ConfigError):
        analyze(DATA / "counter-blog.tar.zst", AnalyzerOptions(yara=[str(bad)]))


class _Stream:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, size: int = -1) -> bytes:
        out = self.data[self.pos : self.pos + size]
        self.pos += len(out)
        return out


def test_one_scan_per_contiguous_run_not_per_page() -> None:
    page = 4096
    # 3 runs: 4 pages, 2 pages (contiguous with the first in memory? no: a gap), 1 page
    entries = (
        PagemapEntry(0x10000, 4, 4),
        PagemapEntry(0x20000, 2, 4),
        PagemapEntry(0x22000, 1, 4),  # merges with the previous one
        PagemapEntry(0x40000, 1, 4),
    )
    index = PageIndex.build(Pagemap(1, entries), page)
    data = bytearray(8 * page)
    data[5 * page + 10 : 5 * page + 24] = b"stratum+tcp://"
    scanner = yara_scan.YaraScanner(yara_scan.compile_rules_from_source(RULES))
    yara_scan.scan_pages(scanner, _Stream(bytes(data)), index, kind="memory", target="t", pid=1)
    assert scanner.calls == 3
    hit = next(iter(scanner.hits.values()))
    assert hit.offsets == [0x20000 + page + 10]


def test_a_match_across_a_piece_boundary_is_found_once() -> None:
    from forensic_checkpoint.analysis.findings.sources import iter_runs

    data = bytearray(30000)
    data[8180:8194] = b"stratum+tcp://"  # straddles the first piece's end
    data[7200:7214] = b"stratum+tcp://"  # inside the overlap: in two pieces
    index = PageIndex.build(Pagemap(1, (PagemapEntry(0x10000, 8, 4),)), 4096)
    padded = bytes(data) + bytes(8 * 4096 - len(data))
    pieces = list(iter_runs(_Stream(padded), index, piece=8192, overlap=1024))
    assert [(p.vaddr - 0x10000, len(p.data), p.seen, p.last) for p in pieces] == [
        (0, 8192, 0, False),
        (7168, 8192, 1024, False),
        (14336, 8192, 1024, False),
        (21504, 8192, 1024, False),
        (28672, 4096, 1024, True),
    ]
    scanner = yara_scan.YaraScanner(yara_scan.compile_rules_from_source(RULES))
    for p in pieces:
        scanner.scan(p.data, kind="memory", target="t", base=p.vaddr, pid=1, seen=p.seen)
    hit = next(iter(scanner.hits.values()))
    assert sorted(hit.offsets) == [0x10000 + 7200, 0x10000 + 8180]
    assert hit.count == 2


def test_streamed_compressed_archive_gives_the_same_hits(tmp_path: Path) -> None:
    """A large compressed archive is not spooled: its pages (and rootfs-diff) come from one
    more streaming pass. A zero spool bound forces that path on the small sample."""
    from forensic_checkpoint.analysis.commands.analyzer import run_analysis
    from forensic_checkpoint.analysis.format.contents import ArchiveLimits

    rules = tmp_path / "attack.yar"
    rules.write_text(RULES)
    options = AnalyzerOptions(yara=[str(rules)])
    path = DATA / "attack-revshell.tar.zst"
    spooled = run_analysis(path, options)
    streamed = run_analysis(path, options, ArchiveLimits(max_spool_bytes=0))

    def summary(report: object) -> list[tuple[str, str | None, str]]:
        return sorted(
            (f.id, f.evidence.address, f.evidence.details.get("matches", ""))
            for f in report.findings  # type: ignore[attr-defined]
        )

    assert summary(streamed) == summary(spooled)
    assert [h.command for h in streamed.shell_history] == [h.command for h in spooled.shell_history]
    assert any(f.rule == "yara" for f in streamed.findings)


def test_plain_tar_read_by_offset_gives_the_same_hits(tmp_path: Path) -> None:
    import zstandard

    plain = tmp_path / "attack.tar"
    with (DATA / "attack-revshell.tar.zst").open("rb") as src, plain.open("wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    rules = tmp_path / "attack.yar"
    rules.write_text(RULES)
    options = AnalyzerOptions(yara=[str(rules)])
    by_offset = analyze(plain, options)
    spooled = analyze(DATA / "attack-revshell.tar.zst", options)
    assert by_offset.archive.compression == "none"
    assert sorted((f.id, f.evidence.address) for f in by_offset.findings) == sorted(
        (f.id, f.evidence.address) for f in spooled.findings
    )
