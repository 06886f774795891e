"""A hit in shared memory names every process that can read it (issue 16): a memfd, MAP_SHARED
anonymous memory or a SysV segment is dumped once (pagemap-shmem-<shmid>.img), and a search
match, a credential or a YARA hit there must list all the processes that map or hold it.

attack-revshell's memfd (memfd:kworker, shmid 1085) is mapped only by pid 23, which runs it.
The edit maps it into pid 24 too, as ``mmap(MAP_SHARED)`` of /proc/23/fd/3 would: one more
VMA in mm-24.img with the status bits, flags and files.img id CRIU gives such a VMA (the shared
pages stay in the memfd's own pages, not in pid 24's pagemap). It also writes an AWS-format
key (AWS's documented example) into the memfd's pages, as a process writing to it would.
"""

from __future__ import annotations

from pathlib import Path

from pycriu.images import mm_pb2
from tests.factories import criu_image, edited_sample, image_records
from tests.findings.findings_crafted import MEMFD, REGULAR, R

from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.analysis.memory import parse_pagemap
from forensic_checkpoint.analysis.model.report import Report

SHMID, MEMFD_FILE_ID, READER = 1085, 37, 24
FILE_SHARED, MAP_SHARED = 1 << 7, 1
START, SIZE = 0x7F8F504D3000, 11 * 4096  # 43,888 bytes of memfd, free in pid 24's layout
KEY = b"AKIAIOSFODNN7EXAMPLE"
KEY_OFFSET = 0x9000  # inside /bin/sleep's bytes, past its code


def _share(members: dict[str, bytes]) -> None:
    name = f"checkpoint/mm-{READER}.img"
    magic, records = image_records(members[name])
    mm = mm_pb2.mm_entry.FromString(records[0])
    vma = mm_pb2.mm_entry().vmas.add()
    vma.start, vma.end, vma.pgoff, vma.shmid = START, START + SIZE, 0, MEMFD_FILE_ID
    vma.prot, vma.flags, vma.status, vma.fd = R, MAP_SHARED, REGULAR | FILE_SHARED | MEMFD, -1
    vmas = sorted([*mm.vmas, vma], key=lambda v: v.start)
    del mm.vmas[:]
    mm.vmas.extend(vmas)
    members[name] = criu_image(magic, [mm.SerializeToString(), *records[1:]])
    pagemap = parse_pagemap(members[f"checkpoint/pagemap-shmem-{SHMID}.img"])
    pages = f"checkpoint/pages-{pagemap.pages_id}.img"
    first = pagemap.entries[0]
    assert first.present and first.vaddr == 0 and first.nr_pages * 4096 > KEY_OFFSET + len(KEY)
    data = bytearray(members[pages])
    data[KEY_OFFSET : KEY_OFFSET + len(KEY)] = KEY
    members[pages] = bytes(data)


def _analyse(tmp_path: Path, **options: object) -> Report:
    path = edited_sample("attack-revshell", tmp_path, _share)
    return analyze(path, AnalyzerOptions(**options))  # type: ignore[arg-type]


def test_a_shared_memory_object_lists_every_process_that_can_read_it(tmp_path: Path) -> None:
    report = _analyse(tmp_path, searches=["invalid time interval"], reveal=True)
    memfd = next(o for o in report.shared_memory if o.shmid == SHMID)
    assert memfd.pids == [23, READER]
    match = report.memory.searches[0].matches[0]  # a string of /bin/sleep, in the memfd
    assert match.shared_with == [23, READER]
    assert match.pid in (23, READER)
    key = next(f for f in report.findings if f.rule == "aws-access-key")
    assert key.evidence.pids == [23, READER]
    assert (
        f"memfd memfd:kworker offset 0x{KEY_OFFSET:x} (shared: pids 23, 24"
        in (key.evidence.details["locations"])
    )


def test_a_yara_hit_in_shared_memory_names_every_reader(tmp_path: Path) -> None:
    rules = tmp_path / "key.yar"
    rules.write_text('rule aws_key { strings: $k = "AKIAIOSFODNN7EXAMPLE" condition: $k }')
    report = _analyse(tmp_path, yara=[str(rules)])
    hit = next(
        f
        for f in report.findings
        if f.rule == "yara" and "shared-memory" in f.evidence.details["target"]
    )
    assert hit.evidence.pids == [23, READER]
    assert hit.evidence.details["shared_with"].startswith("pids 23, 24 ")
