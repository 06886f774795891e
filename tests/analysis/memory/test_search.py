"""Streaming search over built processes: boundaries, gaps, holes, regex, context, sources."""

from __future__ import annotations

import io
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.analysis.memory.fc_memory_images import (
    PE_LAZY,
    PE_PARENT,
    PE_PRESENT,
    Region,
    build_process,
    mm_image,
)

from forensic_checkpoint.analysis.memory import (
    MemoryHit,
    MemoryScanner,
    MemoryUnavailableError,
    PageIndex,
    Pattern,
    ProcessMemory,
    SeekableRange,
    derive_page_size,
    literals,
    parse_pagemap,
    rss_by_vma,
    search,
    vmas_from_mm,
)
from forensic_checkpoint.analysis.memory.literals import MATCH_CAP
from forensic_checkpoint.errors import ImageError

PAGE = 4096


def page_fill(n: int, byte: int = 0x2E) -> bytes:
    return bytes([byte]) * (n * PAGE)


def index_of(pagemap: bytes, pages: bytes) -> PageIndex:
    pm = parse_pagemap(pagemap)
    return PageIndex.build(pm, derive_page_size(len(pages), pm))


def hits_of(
    pages: bytes, index: PageIndex, patterns: list[Pattern], **kw: object
) -> list[MemoryHit]:
    return list(search(pages, index, patterns, **kw))  # type: ignore[arg-type]


def with_marker(data: bytes, at: int, marker: bytes) -> bytes:
    return data[:at] + marker + data[at + len(marker) :]


MARK = b"STRADDLE_MARKER_\x00\xff_END"


def test_match_across_two_contiguous_pagemap_entries_is_found() -> None:
    # Two entries (as CRIU writes for two adjacent VMAs) with contiguous addresses.
    a = with_marker(page_fill(2), 2 * PAGE - 9, MARK[:9])
    b = with_marker(page_fill(1), 0, MARK[9:])
    pagemap, pages = build_process([Region(0x10000, a), Region(0x12000, b)])
    index = index_of(pagemap, pages)
    for chunk in (PAGE, 3 * PAGE, 1 << 20):
        hits = hits_of(pages, index, [Pattern.literal(MARK)], chunk_size=chunk, context=4)
        assert [(h.vaddr, h.match, h.before, h.after) for h in hits] == [
            (0x12000 - 9, MARK, b"....", b"....")
        ]


def test_reused_read_buffer_gives_the_same_hits_as_bytes() -> None:
    # iter_chunks refills one bytearray; nothing the scanner keeps may alias it.
    data = bytearray(os.urandom(40 * PAGE))
    for at in range(PAGE - 5, len(data) - 64, 3 * PAGE + 17):
        data[at : at + len(MARK)] = MARK
    regions = [Region(0x40000, bytes(data[: 24 * PAGE])), Region(0x58000, bytes(data[24 * PAGE :]))]
    pagemap, pages = build_process(regions)
    index = index_of(pagemap, pages)
    pats = [Pattern.literal(MARK), Pattern.regex(rb"STRADDLE_\w+_\x00", max_length=40)]

    def key(h: MemoryHit) -> tuple[int, int]:
        return h.pattern_index, h.vaddr

    want = sorted(hits_of(pages, index, pats, context=8), key=key)
    assert len(want) == 2 * 13
    for chunk in (PAGE, 5 * PAGE + 3):
        src = SeekableRange(io.BytesIO(pages), 0, len(pages))
        got = hits_of(src, index, pats, context=8, chunk_size=chunk)  # type: ignore[arg-type]
        assert sorted(got, key=key) == want


def test_match_across_a_virtual_address_gap_is_not_reported() -> None:
    # Same bytes back to back in pages-N.img, but the memory is not contiguous.
    a = with_marker(page_fill(2), 2 * PAGE - 9, MARK[:9])
    b = with_marker(page_fill(1), 0, MARK[9:])
    pagemap, pages = build_process([Region(0x10000, a), Region(0x13000, b)])
    assert MARK in pages
    assert hits_of(pages, index_of(pagemap, pages), [Pattern.literal(MARK)]) == []


def test_parent_and_lazy_holes_do_not_shift_later_pages() -> None:
    # A pre-dump child: PE_PARENT and PE_LAZY pages are not in pages-N.img. A reader that
    # advances the offset for them (go-criu) reads "late" from the wrong place.
    late = with_marker(page_fill(2, 0x41), 100, b"LATE_SECRET")
    regions = [
        Region(0x20000, page_fill(1, 0x30)),
        Region(0x21000, page_fill(3, 0x50), PE_PARENT),
        Region(0x24000, page_fill(1, 0x4C), PE_LAZY),
        Region(0x30000, late),
        Region(0x32000, page_fill(1, 0x42), PE_LAZY | PE_PRESENT),
    ]
    pagemap, pages = build_process(regions)
    assert len(pages) == 4 * PAGE
    index = index_of(pagemap, pages)
    assert [(h.vaddr, h.size, h.kind) for h in index.holes] == [
        (0x21000, 3 * PAGE, "parent"),
        (0x24000, PAGE, "lazy"),
    ]
    [hit] = hits_of(pages, index, [Pattern.literal(b"LATE_SECRET")])
    assert (hit.vaddr, hit.file_offset) == (0x30000 + 100, PAGE + 100)

    memory = ProcessMemory.from_bytes(index, pages)
    assert memory.read(0x30000 + 100, 11) == b"LATE_SECRET"
    assert memory.read(0x32000, 4) == b"BBBB"  # lazy page transferred into the image
    with pytest.raises(MemoryUnavailableError, match="parent hole"):
        memory.read(0x21010, 4)
    with pytest.raises(MemoryUnavailableError, match="lazy hole"):
        memory.read(0x24000, 1)
    with pytest.raises(MemoryUnavailableError, match="not dumped"):
        memory.read(0x25000, 1)
    assert memory.try_read(0x20FFE, 4) is None  # runs into the parent hole


def test_parent_holes_are_read_from_the_pre_dump_parent_when_given() -> None:
    # Pre-dump parent holds 0x21000-0x24000; the child dump marks them PE_PARENT.
    parent_map, parent_pages = build_process(
        [Region(0x20000, page_fill(1, 0x70)), Region(0x21000, page_fill(3, 0x50))], pages_id=9
    )
    child_map, child_pages = build_process(
        [
            Region(0x20000, page_fill(1, 0x30)),
            Region(0x21000, page_fill(3), PE_PARENT),
            Region(0x24000, page_fill(1, 0x4C), PE_LAZY),
        ]
    )
    parent = ProcessMemory.from_bytes(index_of(parent_map, parent_pages), parent_pages)
    child = ProcessMemory.from_bytes(index_of(child_map, child_pages), child_pages, parent=parent)
    # The child's own page wins over the parent's; the hole comes from the parent.
    assert child.read(0x20FFE, 4) == b"00PP"
    with pytest.raises(MemoryUnavailableError, match="lazy hole"):
        child.read(0x23FFF, 2)  # runs from the parent hole into a lazy one


def test_no_match_is_assembled_across_a_hole() -> None:
    a = with_marker(page_fill(1), PAGE - 5, b"HOLE_")
    b = with_marker(page_fill(1), 0, b"SPANNER")
    pagemap, pages = build_process(
        [Region(0x1000, a), Region(0x2000, page_fill(1), PE_PARENT), Region(0x3000, b)]
    )
    assert b"HOLE_SPANNER" in pages
    assert hits_of(pages, index_of(pagemap, pages), [Pattern.literal(b"HOLE_SPANNER")]) == []


def test_regex_over_raw_bytes_across_chunks_with_context_and_vma() -> None:
    data = with_marker(page_fill(8, 0), 3 * PAGE - 3, b"key=\x01\x02\x03ABCDEF99\n")
    pagemap, pages = build_process([Region(0x7F0000000000, data)])
    index = index_of(pagemap, pages)
    vmas = vmas_from_mm(mm_image([(0x7F0000000000, 0x7F0000008000, 1 | 1 << 9)]))
    rx = Pattern.regex(rb"key=[\x00-\x05]+[A-F]+\d+", max_length=64)
    for chunk in (PAGE, 2 * PAGE, 1 << 20):
        [hit] = hits_of(pages, index, [rx], chunk_size=chunk, context=3, vmas=vmas, pid=42)
        assert hit.vaddr == 0x7F0000000000 + 3 * PAGE - 3
        assert hit.match == b"key=\x01\x02\x03ABCDEF99"
        assert (hit.before, hit.after) == (b"\0\0\0", b"\n\0\0")
        assert hit.pid == 42
        assert hit.vma is not None and hit.vma.description == "anon"


@pytest.mark.parametrize("bulk_min", [0, 1 << 30])
def test_counts_go_beyond_max_hits_and_matches_do_not_overlap(bulk_min: int) -> None:
    pagemap, pages = build_process([Region(0x1000, page_fill(4, 0x61))])
    index = index_of(pagemap, pages)
    scanner = MemoryScanner(
        index, [Pattern.literal(b"aaaa")], max_hits=5, chunk_size=PAGE, bulk_min=bulk_min
    )
    hits = scanner.feed(pages) + scanner.finish()
    assert len(hits) == 5
    assert scanner.counts == [4 * PAGE // 4]
    assert [h.vaddr for h in hits] == [0x1000 + 4 * i for i in range(5)]


def test_yara_x_literals_in_large_units_match_bytes_find_exactly() -> None:
    """The bulk path (yara-x) against the find path on one 8 MiB unit: a rare marker, a
    frequent string past yara-x's match cap, overlapping candidates and a 1-byte literal."""
    assert literals.LiteralFinder([MARK]).usable  # yara-x is there: the bulk path is taken
    data = bytearray(os.urandom(2048 * PAGE))
    data[5 * PAGE : 5 * PAGE + 3 * (MATCH_CAP + 500)] = b"xyz" * (MATCH_CAP + 500)
    data[9 * PAGE : 9 * PAGE + 9] = b"ababababa"
    for at in range(PAGE - 7, len(data) - 64, 97 * PAGE + 13):
        data[at : at + len(MARK)] = MARK
    pagemap, pages = build_process([Region(0x7F0000000000, bytes(data))])
    index = index_of(pagemap, pages)
    patterns = [Pattern.literal(x) for x in (MARK, b"xyz", b"abab", b"\xff", b"absent!")]

    def run(bulk_min: int) -> tuple[list[int], list[tuple[int, int, bytes, bytes]]]:
        scanner = MemoryScanner(index, patterns, max_hits=1 << 30, bulk_min=bulk_min)
        hits = scanner.feed(pages) + scanner.finish()
        return scanner.counts, sorted((h.pattern_index, h.vaddr, h.before, h.after) for h in hits)

    bulk, find = run(0), run(1 << 40)
    assert bulk == find
    counts = bulk[0]
    assert counts[1] >= MATCH_CAP + 500 and counts[2] == 2 and counts[4] == 0
    assert counts[0] == len(range(PAGE - 7, len(data) - 64, 97 * PAGE + 13))


def test_without_yara_x_the_bulk_path_falls_back_to_find(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(literals, "_compiled", lambda _needles: None)
    data = with_marker(page_fill(300), 200 * PAGE + 3, MARK)
    pagemap, pages = build_process([Region(0x10000, data)])
    index = index_of(pagemap, pages)
    scanner = MemoryScanner(index, [Pattern.literal(MARK)], bulk_min=0)
    [hit] = scanner.feed(pages) + scanner.finish()
    assert hit.vaddr == 0x10000 + 200 * PAGE + 3


def test_seekable_source_inside_a_larger_file_and_truncation() -> None:
    data = with_marker(page_fill(3), 2 * PAGE + 7, b"IN_TAR_MEMBER")
    pagemap, pages = build_process([Region(0x5000, data)])
    index = index_of(pagemap, pages)
    blob = io.BytesIO(os.urandom(777) + pages + os.urandom(99))
    src = SeekableRange(blob, 777, len(pages))
    [hit] = search(src, index, [Pattern.literal(b"IN_TAR_MEMBER")])
    assert hit.vaddr == 0x5000 + 2 * PAGE + 7
    memory = ProcessMemory.from_file(index, blob, 777)
    assert memory.read(hit.vaddr, 13) == b"IN_TAR_MEMBER"

    found: list[MemoryHit] = []
    with pytest.raises(ImageError, match="holds"):
        found.extend(search(pages[: 2 * PAGE + 30], index, [Pattern.literal(b"IN_TAR_MEMBER")]))
    assert [h.vaddr for h in found] == [hit.vaddr]  # hits before the cut are still delivered


def test_retained_ranges_give_random_reads_after_one_streamed_pass() -> None:
    argv = b"python3\0/opt/app/server.py\0"
    data = with_marker(page_fill(4, 0x11), PAGE - 10, argv)
    pagemap, pages = build_process([Region(0x9000, data)])
    index = index_of(pagemap, pages)
    start = 0x9000 + PAGE - 10
    scanner = MemoryScanner(index, [], retain=[(start, start + len(argv))])
    for i in range(0, len(pages), 1000):
        scanner.feed(pages[i : i + 1000])
    scanner.finish()
    memory = scanner.retained()
    assert memory.read_cstring(start) == b"python3"
    assert memory.read_cstring(start + 8) == b"/opt/app/server.py"
    # Whole pages around the ranges are kept (cheap, and strings may run on); others are not.
    assert memory.read(0x9000, 4) == b"\x11" * 4
    with pytest.raises(MemoryUnavailableError):
        memory.read(0x9000 + 3 * PAGE, 1)


def test_rss_counts_present_pages_per_vma() -> None:
    pagemap, pages = build_process(
        [
            Region(0x10000, page_fill(2)),
            Region(0x12000, page_fill(1), PE_PARENT),
            Region(0x20000, page_fill(3)),
        ]
    )
    index = index_of(pagemap, pages)
    rss = rss_by_vma(
        index, [(0x10000, 0x14000, "heap"), (0x20000, 0x21000, "a"), (0x21000, 0x30000, "b")]
    )
    assert [(r.vma.description, r.present_pages, r.unavailable_pages) for r in rss] == [
        ("heap", 2, 1),
        ("a", 1, 0),
        ("b", 2, 0),
    ]
    assert rss[0].present_bytes == 2 * PAGE


# --- Property: the streamed search equals a naive search of each contiguous memory segment ---


def segments_of(regions: list[Region]) -> list[tuple[int, bytearray]]:
    """Maximal runs of contiguous present memory."""
    segments: list[tuple[int, bytearray]] = []
    for r in regions:
        if not r.flags & PE_PRESENT:
            continue
        if segments and segments[-1][0] + len(segments[-1][1]) == r.vaddr:
            segments[-1][1].extend(r.data)
        else:
            segments.append((r.vaddr, bytearray(r.data)))
    return segments


def naive(regions: list[Region], needle: bytes, ctx: int) -> list[tuple[int, bytes, bytes]]:
    """Non-overlapping matches per segment with their context, clipped at segment edges."""
    return [
        (
            seg + m.start(),
            bytes(data[max(0, m.start() - ctx) : m.start()]),
            bytes(data[m.end() : m.end() + ctx]),
        )
        for seg, data in segments_of(regions)
        for m in re.finditer(re.escape(needle), data)
    ]


@st.composite
def processes(draw: st.DrawFn) -> tuple[list[Region], bytes]:
    needle = draw(st.binary(min_size=1, max_size=40))
    regions = []
    vaddr = 0x100000
    for _ in range(draw(st.integers(1, 6))):
        vaddr += draw(st.sampled_from([0, 0, PAGE, 5 * PAGE]))  # contiguous or gap
        n = draw(st.integers(1, 3))
        data = bytearray(draw(st.binary(min_size=1, max_size=64)) * (n * PAGE))[: n * PAGE]
        for _ in range(draw(st.integers(0, 3))):  # plant needles, often on page edges
            edge = draw(st.integers(0, n)) * PAGE
            at = max(0, min(len(data) - 1, edge - draw(st.integers(0, len(needle)))))
            data[at : at + len(needle)] = needle
        flags = draw(st.sampled_from([PE_PRESENT] * 4 + [PE_PARENT, PE_LAZY]))
        regions.append(Region(vaddr, bytes(data[: n * PAGE]), flags))
        vaddr += n * PAGE
    return regions, needle


@settings(max_examples=150, deadline=None)
@given(
    processes(),
    st.sampled_from([PAGE, 2 * PAGE + 1, 1 << 20]),
    st.integers(1, 9000),
    st.sampled_from([0, 1 << 30]),  # literals by yara-x in every unit, or by bytes.find only
    st.data(),
)
def test_streamed_search_equals_naive_segment_search(
    proc: tuple[list[Region], bytes], chunk: int, feed: int, bulk_min: int, data: st.DataObject
) -> None:
    regions, needle = proc
    pagemap, pages = build_process(regions)
    index = index_of(pagemap, pages)
    expected = naive(regions, needle, 5)
    literal = Pattern.literal(needle)
    regex = Pattern.regex(re.escape(needle), max_length=len(needle))
    scanner = MemoryScanner(
        index,
        [literal, regex],
        chunk_size=chunk,
        context=5,
        max_hits=1 << 30,
        bulk_min=bulk_min,
    )
    hits = []
    for i in range(0, len(pages), feed):
        hits += scanner.feed(pages[i : i + feed])
    hits += scanner.finish()
    assert scanner.complete
    for k in (0, 1):
        got = sorted((h.vaddr, h.before, h.after) for h in hits if h.pattern_index == k)
        assert got == expected
    memory = ProcessMemory.from_bytes(index, pages)
    for h in hits[: data.draw(st.integers(0, 5))]:
        assert memory.read(h.vaddr, len(needle)) == needle == h.match
