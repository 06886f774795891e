"""The engine against the real CRIU 4.2 archives in tests/data and their truth files."""

from __future__ import annotations

import io
import json
import struct
import tarfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import zstandard
from pycriu.images import mm_pb2
from tests.analysis.memory.fc_memory_images import Entry, pagemap_image

from forensic_checkpoint.analysis.memory import (
    MemoryHit,
    MemoryScanner,
    PageIndex,
    Pattern,
    ProcessMemory,
    SeekableRange,
    derive_page_size,
    parse_pagemap,
    rss_by_vma,
    search,
    shmem_vaddrs,
    vmas_from_mm,
)

DATA = Path(__file__).resolve().parents[2] / "data"
SAMPLES = [
    "counter-blog",
    "counter-blog-crio",
    "counter-blog-containerd",
    "multi-proc",
    "multi-proc.podman-default-zstd",
    "attack-revshell",
]


def truth(name: str) -> dict:  # type: ignore[type-arg]
    return dict(json.loads((DATA / f"{name}.truth.json").read_text()))


def zstd_stream(name: str) -> io.BufferedReader:
    """The plain tar as a stream (podman's own zstd sample is compressed once more here)."""
    raw = zstandard.ZstdDecompressor().stream_reader((DATA / f"{name}.tar.zst").open("rb"))
    head = raw.read(4)
    rest = io.BufferedReader(raw)
    if head == b"\x28\xb5\x2f\xfd":
        inner = zstandard.ZstdDecompressor().stream_reader(_Prefixed(head, rest))  # type: ignore[arg-type]
        return io.BufferedReader(inner)
    return io.BufferedReader(_Prefixed(head, rest))  # type: ignore[arg-type]


class _Prefixed(io.RawIOBase):
    def __init__(self, head: bytes, rest: io.BufferedReader) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)


@cache
def plain_tar(name: str) -> bytes:
    return zstd_stream(name).read()


def mm_entry(data: bytes) -> mm_pb2.mm_entry:
    (size,) = struct.unpack_from("<I", data, 8)
    mm = mm_pb2.mm_entry()
    mm.ParseFromString(data[12 : 12 + size])
    return mm


def patterns_of(name: str) -> list[Pattern]:
    return [Pattern.literal(s["value"]) for s in truth(name)["memory_strings"]]


@dataclass
class Scan:
    hits: list[MemoryHit] = field(default_factory=list)
    indexes: dict[int, PageIndex] = field(default_factory=dict)
    memories: dict[int, ProcessMemory] = field(default_factory=dict)
    mms: dict[int, mm_pb2.mm_entry] = field(default_factory=dict)
    mm_bytes: dict[int, bytes] = field(default_factory=dict)


def scan_seekable(name: str) -> Scan:
    """Random-access path: the plain tar is seekable, pages are read in place."""
    blob = io.BytesIO(plain_tar(name))
    with tarfile.open(fileobj=blob) as tf:  # leaves blob open for ProcessMemory
        members = {m.name: m for m in tf.getmembers()}
        out = Scan()
        for mname, m in members.items():
            if not mname.startswith("checkpoint/pagemap-") or "shmem" in mname:
                continue
            pid = int(mname.rsplit("-", 1)[1].removesuffix(".img"))
            pm = parse_pagemap(tf.extractfile(m).read())  # type: ignore[union-attr]
            pages = members[f"checkpoint/pages-{pm.pages_id}.img"]
            index = PageIndex.build(pm, derive_page_size(pages.size, pm))
            mm = tf.extractfile(members[f"checkpoint/mm-{pid}.img"]).read()  # type: ignore[union-attr]
            src = SeekableRange(blob, pages.offset_data, pages.size)
            out.hits += search(src, index, patterns_of(name), pid=pid, vmas=vmas_from_mm(mm))
            out.indexes[pid] = index
            out.memories[pid] = ProcessMemory.from_file(index, blob, pages.offset_data)
            out.mms[pid] = mm_entry(mm)
            out.mm_bytes[pid] = mm
    return out


def scan_streamed(name: str, feed: int) -> Scan:
    """One pass over the decompressing stream, as for a compressed archive: pagemap and mm
    images come before the pages files in these tars; argv/env pages are retained."""
    out = Scan()
    pagemaps: dict[int, tuple[int, bytes]] = {}  # pages_id -> (pid, pagemap bytes)
    with tarfile.open(fileobj=zstd_stream(name), mode="r|") as tf:
        for m in tf:
            f = tf.extractfile(m)
            if f is None:
                continue
            if m.name.startswith("checkpoint/mm-"):
                pid = int(m.name[len("checkpoint/mm-") : -4])
                out.mm_bytes[pid] = f.read()
                out.mms[pid] = mm_entry(out.mm_bytes[pid])
            elif m.name.startswith("checkpoint/pagemap-") and "shmem" not in m.name:
                pid = int(m.name[len("checkpoint/pagemap-") : -4])
                data = f.read()
                pagemaps[parse_pagemap(data).pages_id] = (pid, data)
            elif m.name.startswith("checkpoint/pages-"):
                pages_id = int(m.name[len("checkpoint/pages-") : -4])
                if pages_id not in pagemaps:
                    continue  # shmem pages
                pid, data = pagemaps[pages_id]
                pm = parse_pagemap(data)
                index = PageIndex.build(pm, derive_page_size(m.size, pm))
                mm = out.mms[pid]
                scanner = MemoryScanner(
                    index,
                    patterns_of(name),
                    pid=pid,
                    vmas=vmas_from_mm(out.mm_bytes[pid]),
                    retain=[(mm.mm_arg_start, mm.mm_arg_end), (mm.mm_env_start, mm.mm_env_end)],
                )
                while chunk := f.read(feed):
                    out.hits += scanner.feed(chunk)
                out.hits += scanner.finish()
                assert scanner.complete
                out.indexes[pid] = index
                out.memories[pid] = scanner.retained()
    return out


def hit_keys(hits: list[MemoryHit]) -> list[tuple[str, int | None, int, int]]:
    return sorted((h.pattern, h.pid, h.vaddr, h.file_offset) for h in hits)


@pytest.mark.parametrize("name", SAMPLES)
def test_every_memory_string_claim_is_found(name: str) -> None:
    scan = scan_seekable(name)
    for claim in truth(name)["memory_strings"]:
        mine = [h for h in scan.hits if h.pattern == claim["value"]]
        assert sorted({h.pid or 0 for h in mine}) == sorted(claim["found_in_pids"]), claim["value"]
        found = {(h.pid, h.vaddr, h.file_offset) for h in mine}
        for occ in claim["occurrence_list"]:
            assert (occ["pid"], int(occ["vaddr"], 16), occ["file_offset"]) in found
        for h in mine:
            assert h.match == claim["value"].encode()
            assert h.vma is not None and h.vma.start <= h.vaddr < h.vma.end
    # Every occurrence the truth lists is found; the engine adds none the truth does not know.
    assert len(scan.hits) == sum(len(c["occurrence_list"]) for c in truth(name)["memory_strings"])


@pytest.mark.parametrize(("name", "feed"), [("counter-blog-crio", 65536), ("multi-proc", 4093)])
def test_streamed_pass_finds_the_same_hits_as_random_access(name: str, feed: int) -> None:
    assert hit_keys(scan_streamed(name, feed).hits) == hit_keys(scan_seekable(name).hits)


def argv_env(memory: ProcessMemory, mm: mm_pb2.mm_entry) -> tuple[list[str], list[str]]:
    def strings(start: int, end: int) -> list[str]:
        raw = memory.read(start, end - start)
        return [s.decode() for s in raw.rstrip(b"\0").split(b"\0")] if raw else []

    return strings(mm.mm_arg_start, mm.mm_arg_end), strings(mm.mm_env_start, mm.mm_env_end)


@pytest.mark.parametrize("name", ["multi-proc", "attack-revshell"])
def test_argv_and_environment_read_by_address_match_the_truth(name: str) -> None:
    procs = {p["pid"]: p for p in truth(name)["processes"] if p.get("cmdline")}
    assert procs
    for scan in (scan_seekable(name), scan_streamed(name, 1 << 16)):
        for pid, proc in procs.items():
            argv, env = argv_env(scan.memories[pid], scan.mms[pid])
            assert argv == proc["cmdline"]
            assert env == proc["environ"]


@pytest.mark.parametrize("name", SAMPLES)
def test_rss_accounts_for_every_dumped_page(name: str) -> None:
    scan = scan_seekable(name)
    for pid, index in scan.indexes.items():
        rss = rss_by_vma(index, vmas_from_mm(scan.mm_bytes[pid]))
        assert sum(r.present_pages for r in rss) == index.present_pages > 0
        assert all(r.unavailable_pages == 0 for r in rss)  # no pre-dump in these samples


def test_shmem_pagemap_of_the_memfd_is_decoded() -> None:
    with tarfile.open(fileobj=io.BytesIO(plain_tar("attack-revshell"))) as tf:
        pm = parse_pagemap(tf.extractfile("checkpoint/pagemap-shmem-1085.img").read())  # type: ignore[union-attr]
        pages = tf.getmember(f"checkpoint/pages-{pm.pages_id}.img")
        index = PageIndex.build(pm, derive_page_size(pages.size, pm))
        memory = ProcessMemory.from_bytes(index, tf.extractfile(pages).read())  # type: ignore[union-attr]
        assert memory.read(0, 4) == b"\x7fELF"  # the memfd holds a copy of /bin/sleep
        # pid 23 runs that memfd: its VMAs of the memfd file map offset 0x2000 at start+0x2000-pgoff
        vmas = vmas_from_mm(tf.extractfile("checkpoint/mm-23.img").read())  # type: ignore[union-attr]
        memfd_vmas = [v for v in vmas if v.description.startswith("memfd")]
        assert len(memfd_vmas) == 5
        [(vma, vaddr)] = shmem_vaddrs(0x2000, memfd_vmas)
        assert (vma.pgoff, vaddr) == (0x2000, vma.start)
        assert shmem_vaddrs(11 * 4096, memfd_vmas) == []  # past the last mapped page
        [(first, at)] = shmem_vaddrs(0, memfd_vmas)
        assert (first.start, at) == (memfd_vmas[0].start, memfd_vmas[0].start)


def test_regex_finds_the_jwt_at_every_truth_address() -> None:
    # A JWT is ~1 KiB: the regex needs a max_length above it to be found across chunks.
    claim = next(
        c for c in truth("attack-revshell")["memory_strings"] if c["value"].startswith("eyJ")
    )
    expected = {(o["pid"], int(o["vaddr"], 16)) for o in claim["occurrence_list"]}
    jwt = Pattern.regex(rb"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]{40,}", max_length=4096)
    blob = io.BytesIO(plain_tar("attack-revshell"))
    found = set()
    with tarfile.open(fileobj=blob) as tf:
        for m in tf.getmembers():
            if not m.name.startswith("checkpoint/pagemap-") or "shmem" in m.name:
                continue
            pid = int(m.name[len("checkpoint/pagemap-") : -4])
            pm = parse_pagemap(tf.extractfile(m).read())  # type: ignore[union-attr]
            pages = tf.getmember(f"checkpoint/pages-{pm.pages_id}.img")
            index = PageIndex.build(pm, derive_page_size(pages.size, pm))
            src = SeekableRange(blob, pages.offset_data, pages.size)
            for hit in search(src, index, [jwt], pid=pid, chunk_size=64 << 10):
                if hit.match == claim["value"].encode():
                    found.add((hit.pid, hit.vaddr))
    assert found == expected


def test_same_hits_when_the_pagemaps_are_rewritten_in_criu_3_layout() -> None:
    # checkpointctl panics on CRIU 3.x pagemaps (no field 5); the engine must read both alike.
    blob = io.BytesIO(plain_tar("multi-proc"))
    patterns = patterns_of("multi-proc")
    for criu42 in (True, False):
        keys = []
        blob.seek(0)
        with tarfile.open(fileobj=blob) as tf:
            for m in tf.getmembers():
                if not m.name.startswith("checkpoint/pagemap-"):
                    continue
                pm = parse_pagemap(tf.extractfile(m).read())  # type: ignore[union-attr]
                entries = [Entry(e.vaddr, e.nr_pages, e.flags) for e in pm.entries]
                rewritten = pagemap_image(pm.pages_id, entries, criu42=criu42)
                pm2 = parse_pagemap(rewritten)
                assert pm2 == pm
                pages = tf.getmember(f"checkpoint/pages-{pm.pages_id}.img")
                index = PageIndex.build(pm2, derive_page_size(pages.size, pm2))
                src = SeekableRange(blob, pages.offset_data, pages.size)
                keys += hit_keys(list(search(src, index, patterns)))
        if criu42:
            baseline = keys
        else:
            assert keys == baseline
            assert len(baseline) == sum(
                len(c["occurrence_list"]) for c in truth("multi-proc")["memory_strings"]
            )
