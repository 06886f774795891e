"""Property tests: whatever the bytes, the parsers raise only the project's errors.

The inputs are real sample members with hypothesis-chosen damage, plus raw noise, so the
fuzzing reaches the protobuf decoders and the builders behind them, not just the magic check.
"""

from __future__ import annotations

import contextlib
import io
import struct
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.analysis.hostile_archives import entry, replace, small_members, write_tar

from forensic_checkpoint.analysis import AnalyzerOptions
from forensic_checkpoint.analysis.commands.analyzer import run_analysis
from forensic_checkpoint.analysis.format.contents import ArchiveLimits
from forensic_checkpoint.analysis.format.criu_images import IMAGE_TYPES, decode, magic_values
from forensic_checkpoint.analysis.sections.rootfs import list_rootfs
from forensic_checkpoint.errors import ForensicCheckpointError, ImageError

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
KINDS = sorted(IMAGE_TYPES)
LIMITS = ArchiveLimits(max_total_bytes=64 << 20, max_inner_bytes=8 << 20)


@cache
def _base_tar() -> bytes:
    path = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")
    out = write_tar(path / f"fc-fuzz-base-{id(_base_tar)}.tar", small_members())
    data = out.read_bytes()
    out.unlink()
    return data


@FUZZ
@given(kind=st.sampled_from(KINDS), body=st.binary(max_size=512), with_magic=st.booleans())
def test_image_decoder_raises_only_image_error(kind: str, body: bytes, with_magic: bool) -> None:
    data = body
    if with_magic:
        data = struct.pack("<II", 0x54564319, magic_values()[kind]) + body
    try:
        image = decode(kind, data)
    except ImageError as exc:
        assert "\n" not in exc.message
    else:
        assert image.kind == kind


@FUZZ
@given(
    kind=st.sampled_from(["PSTREE", "CORE", "FILES", "MM", "FDINFO", "TCP_STREAM", "SK_QUEUES"]),
    records=st.lists(st.binary(max_size=64), max_size=6),
)
def test_image_decoder_on_framed_noise(kind: str, records: list[bytes]) -> None:
    """Well-framed records of random protobuf bytes exercise the message parsers."""
    data = struct.pack("<II", 0x54564319, magic_values()[kind])
    data += b"".join(struct.pack("<I", len(r)) + r for r in records)
    with contextlib.suppress(ImageError):
        decode(kind, data)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_rootfs_listing_never_raises(data: bytes) -> None:
    listing = list_rootfs(io.BytesIO(data), LIMITS)
    assert isinstance(listing.warnings, list)


@FUZZ
@given(
    cut=st.integers(min_value=0, max_value=1 << 20),
    flips=st.lists(
        st.tuples(st.integers(min_value=0, max_value=1 << 20), st.integers(1, 255)), max_size=8
    ),
)
def test_damaged_archive_gives_report_or_project_error(
    cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(_base_tar())
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    if cut % len(data):
        del data[len(data) - cut % len(data) :]
    path = Path("/tmp") / f"fc-fuzz-{abs(hash((cut, tuple(flips))))}.tar"
    path.write_bytes(bytes(data))
    try:
        report = run_analysis(path, AnalyzerOptions(searches=["bash"]), LIMITS)
        assert report.archive.size_bytes == len(data)
    except ForensicCheckpointError as exc:
        assert "\n" not in exc.message
    finally:
        path.unlink()


@FUZZ
@given(
    name=st.sampled_from(
        [
            "checkpoint/pstree.img",
            "checkpoint/core-6.img",
            "checkpoint/files.img",
            "checkpoint/fdinfo-3.img",
            "checkpoint/mm-6.img",
            "checkpoint/pagemap-6.img",
            "checkpoint/ids-6.img",
            "checkpoint/utsns-12.img",
            "spec.dump",
            "config.dump",
        ]
    ),
    body=st.binary(max_size=300),
)
def test_one_hostile_member_costs_at_most_its_section(name: str, body: bytes) -> None:
    items = small_members()
    original = next(d for i, d in items if i.name == name)
    # Keep the real header so the decoder gets past the magic into the protobuf.
    blob = original[:8] + struct.pack("<I", len(body)) + body if name.endswith(".img") else body
    path = Path("/tmp") / f"fc-fuzz-m-{abs(hash((name, body)))}.tar"
    write_tar(path, [*replace(items, name, blob), entry("extra", b"")])
    try:
        report = run_analysis(path, AnalyzerOptions(), LIMITS)
    finally:
        path.unlink()
    assert report.archive.engine in {"podman", "unknown", "cri-o", "containerd"}
