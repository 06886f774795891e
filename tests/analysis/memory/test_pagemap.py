"""Pagemap decoding: CRIU 4.2 and 3.x layouts, legacy flags, malformed input, page size."""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.analysis.memory.fc_memory_images import (
    MM,
    PAGEMAP,
    PE_LAZY,
    PE_PARENT,
    PE_PRESENT,
    Entry,
    frame,
    mm_image,
    pagemap_image,
)

from forensic_checkpoint.analysis.memory import (
    PageIndex,
    PagemapEntry,
    derive_page_size,
    parse_pagemap,
    vmas_from_mm,
)
from forensic_checkpoint.errors import ImageError

ENTRIES = [
    Entry(0x400000, 3, PE_PRESENT),
    Entry(0x403000, 2, PE_PARENT),
    Entry(0x7F0000000000, 1 << 20, PE_LAZY | PE_PRESENT),  # > 16 bits: varint of several bytes
]


@pytest.mark.parametrize("criu42", [True, False], ids=["criu-4.2-field5", "criu-3.x-field2"])
def test_page_count_comes_from_field_5_or_field_2(criu42: bool) -> None:
    pm = parse_pagemap(pagemap_image(7, ENTRIES, criu42=criu42))
    assert pm.pages_id == 7
    assert pm.entries == (
        PagemapEntry(0x400000, 3, PE_PRESENT),
        PagemapEntry(0x403000, 2, PE_PARENT),
        PagemapEntry(0x7F0000000000, 1 << 20, PE_LAZY | PE_PRESENT),
    )
    assert pm.present_pages == 3 + (1 << 20)


def test_legacy_entries_are_normalised_like_criu() -> None:
    # init_compat_pagemap_entry(): in_parent -> PE_PARENT, no flags -> PE_PRESENT.
    img = pagemap_image(
        1,
        [
            Entry(0x1000, 1, None, in_parent=True),
            Entry(0x2000, 1, None),
            Entry(0x3000, 1, None, False),
        ],
        criu42=False,
    )
    assert [e.flags for e in parse_pagemap(img).entries] == [PE_PARENT, PE_PRESENT, PE_PRESENT]


def test_pagemap_without_common_magic_is_accepted() -> None:
    img = pagemap_image(2, ENTRIES[:1])
    assert parse_pagemap(img[4:]).entries[0].nr_pages == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (frame(MM, []), "magic"),
        (frame(PAGEMAP, []), "no head"),
        (pagemap_image(1, ENTRIES)[:-3], "truncated"),
        (pagemap_image(1, ENTRIES) + b"\x01\x00", "record length"),
        (frame(PAGEMAP, [b""]), "pages_id"),
        (pagemap_image(1, [Entry(0x5000, 2), Entry(0x6000, 1)]), "overlaps"),
        (frame(PAGEMAP, [b"\x08\x01", b"\x10\x01"]), "no vaddr"),
        (frame(PAGEMAP, [b"\x08\x01", b"\x08\x80\x20"]), "no page count"),
        (frame(PAGEMAP, [b"\x08\x01", b"\xff\xff\xff"]), "does not decode"),
    ],
)
def test_malformed_pagemaps_raise_image_error(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        parse_pagemap(data)


@pytest.mark.slow  # parses and indexes a pagemap of 200 000 entries
def test_huge_pagemap_is_parsed_and_indexed_exactly() -> None:
    # 200 000 entries alternating present runs and gaps: nothing merges, offsets accumulate.
    n = 200_000
    entries = [Entry(0x10000000 + i * 0x3000, 2, PE_PRESENT) for i in range(n)]
    pm = parse_pagemap(pagemap_image(3, entries))
    assert len(pm.entries) == n
    index = PageIndex.build(pm, derive_page_size(n * 2 * 4096, pm))
    assert len(index.runs) == n
    assert index.runs[-1].file_offset == (n - 1) * 2 * 4096
    assert index.locate(0x10000000 + 12345 * 0x3000 + 5) == (
        index.runs[12345],
        12345 * 8192 + 5,
    )


def test_page_size_is_derived_from_the_pages_file() -> None:
    pm = parse_pagemap(pagemap_image(1, ENTRIES[:2]))  # 3 present pages
    assert derive_page_size(3 * 16384, pm) == 16384
    assert derive_page_size(3 * 4096, 3) == 4096
    assert derive_page_size(0, 0) == 4096
    with pytest.raises(ImageError):
        derive_page_size(3 * 4096 + 1, pm)  # truncated or mismatched pages file
    with pytest.raises(ImageError):
        derive_page_size(3 * 3000, pm)  # no architecture has 3000-byte pages
    with pytest.raises(ImageError):
        derive_page_size(4096, 0)


def test_index_rejects_entries_not_aligned_to_the_derived_page_size() -> None:
    pm = parse_pagemap(pagemap_image(1, [Entry(0x1000, 1)]))
    with pytest.raises(ImageError, match="aligned"):
        PageIndex.build(pm, 16384)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_garbage_only_raises_image_error(data: bytes) -> None:
    for candidate in (data, struct.pack("<II", 0x54564319, PAGEMAP) + data):
        with contextlib.suppress(ImageError):
            parse_pagemap(candidate)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_pagemaps_only_raise_image_error(data: st.DataObject) -> None:
    img = bytearray(pagemap_image(1, ENTRIES))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(img) - 1))
        img[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(img)))
    try:
        pm = parse_pagemap(bytes(img[:cut]))
    except ImageError:
        return
    with contextlib.suppress(ImageError):
        PageIndex.build(pm)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mm_images_only_raise_image_error(data: st.DataObject) -> None:
    img = bytearray(mm_image([(0x1000, 0x3000, 0x201), (0x7000, 0x9000, 0x41)]))
    for _ in range(data.draw(st.integers(0, 8))):
        img[data.draw(st.integers(0, len(img) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(img)))
    with contextlib.suppress(ImageError):
        vmas = vmas_from_mm(bytes(img[:cut]))
        assert all(isinstance(v.start, int) for v in vmas)


def test_vmas_from_mm_labels_and_sorts() -> None:
    vmas = vmas_from_mm(mm_image([(0x7000, 0x9000, 0x41), (0x1000, 0x3000, 0x201 | 0x20)]))
    assert [(v.start, v.end, v.description) for v in vmas] == [
        (0x1000, 0x3000, "[heap]"),
        (0x7000, 0x9000, "file #0"),
    ]


def test_embedded_pagemap42_descriptor_is_pycriu_pagemap_plus_field_5() -> None:
    """The bytes the engine decodes with are pycriu's pagemap.proto, every field optional,
    CRIU's display options dropped, field 2 renamed and CRIU 4.2's field 5 added."""
    from google.protobuf import descriptor_pb2
    from pycriu.images import pagemap_pb2

    from forensic_checkpoint.analysis.memory.pagemap import PAGEMAP42_PACKAGE, PAGEMAP42_PROTO

    src = descriptor_pb2.FileDescriptorProto()
    pagemap_pb2.DESCRIPTOR.CopyToProto(src)
    expected = descriptor_pb2.FileDescriptorProto(
        name="forensic_checkpoint/pagemap42.proto", package=PAGEMAP42_PACKAGE
    )
    for message in src.message_type:
        copy = expected.message_type.add()
        copy.CopyFrom(message)
        for field in copy.field:
            field.ClearField("options")
            field.label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
            if copy.name == "pagemap_entry" and field.number == 2:
                field.name = "compat_nr_pages"
        if copy.name == "pagemap_entry":
            assert 5 not in {f.number for f in copy.field}  # Debian's pycriu predates 4.2
            copy.field.add(
                name="nr_pages",
                number=5,
                type=descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
            )
    embedded = descriptor_pb2.FileDescriptorProto.FromString(PAGEMAP42_PROTO)
    assert embedded == expected


def test_pure_python_protobuf_backend_decodes_the_same_pagemap(tmp_path: Path) -> None:
    """With PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python the classes come from the public
    descriptor_pool/message_factory API and decode the same entries as upb's."""
    data = pagemap_image(7, ENTRIES, criu42=True)
    (tmp_path / "pagemap.img").write_bytes(data)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from google.protobuf.internal import api_implementation\n"
        "from forensic_checkpoint.analysis.memory import parse_pagemap\n"
        "pm = parse_pagemap(Path(sys.argv[1]).read_bytes())\n"
        "print(api_implementation.Type(), pm.pages_id, [tuple(e) for e in pm.entries])\n"
    )
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pagemap.img")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.split(" ", 2)
    expected = parse_pagemap(data)
    assert out[0] == "python"
    assert int(out[1]) == expected.pages_id == 7
    assert out[2].strip() == str([tuple(e) for e in expected.entries])
