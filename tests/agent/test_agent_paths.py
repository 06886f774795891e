"""The agent only touches archives directly inside the checkpoint directory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from forensic_checkpoint.agent import paths
from forensic_checkpoint.errors import CaptureError


def test_pattern_matches_the_kubelets_name_for_this_container_only() -> None:
    pattern = paths.archive_name_pattern("counter-7f9d", "default", "app")
    good = "checkpoint-counter-7f9d_default-app-2024-02-29T18:28:17Z.tar"
    assert paths.archive_time(good, pattern) == datetime(2024, 2, 29, 18, 28, 17, tzinfo=UTC)
    # container "app" must not claim container "app-sidecar"'s archive, nor another pod's
    assert (
        paths.archive_time(
            "checkpoint-counter-7f9d_default-app-sidecar-2024-02-29T18:28:17Z.tar", pattern
        )
        is None
    )
    assert (
        paths.archive_time("checkpoint-counter-7f9_default-app-2024-02-29T18:28:17Z.tar", pattern)
        is None
    )
    assert (
        paths.archive_time(
            "checkpoint-counter-7f9d_default-app-2024-02-29T18:28:17Z.tar.tmp", pattern
        )
        is None
    )
    offset = "checkpoint-counter-7f9d_default-app-2024-02-29T19:28:17+01:00.tar"
    assert paths.archive_time(offset, pattern) == datetime(2024, 2, 29, 18, 28, 17, tzinfo=UTC)


def test_resolve_accepts_a_regular_file_in_the_dir(tmp_path: Path) -> None:
    archive = tmp_path / "checkpoint-p_ns-c-2024-01-01T00:00:00Z.tar"
    archive.write_bytes(b"x")
    assert paths.resolve_archive(str(archive), tmp_path) == archive.resolve()


@pytest.mark.parametrize(
    "kind", ["outside", "relative", "dotdot", "symlink-out", "directory", "missing", "nested"]
)
def test_resolve_refuses_anything_else(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "checkpoints"
    root.mkdir()
    outside = tmp_path / "secret"
    outside.write_text("not evidence")
    path: str
    if kind == "outside":
        path = str(outside)
    elif kind == "relative":
        path = "checkpoint-p_ns-c-2024-01-01T00:00:00Z.tar"
    elif kind == "dotdot":
        path = str(root / ".." / "secret")
    elif kind == "symlink-out":
        link = root / "checkpoint-p_ns-c-2024-01-01T00:00:00Z.tar"
        link.symlink_to(outside)
        path = str(link)
    elif kind == "directory":
        (root / "d.tar").mkdir()
        path = str(root / "d.tar")
    elif kind == "nested":
        (root / "sub").mkdir()
        (root / "sub" / "a.tar").write_bytes(b"x")
        path = str(root / "sub" / "a.tar")
    else:
        path = str(root / "gone.tar")
    with pytest.raises(CaptureError) as info:
        paths.resolve_archive(path, root)
    expected = "ArchiveMissing" if kind == "missing" else "UnsafeArchivePath"
    assert info.value.reason == expected


def test_find_archives_since_the_call_to_the_second(tmp_path: Path) -> None:
    names = [
        "checkpoint-p_ns-c-2026-11-28T12:00:04Z.tar",  # before the call
        "checkpoint-p_ns-c-2026-11-28T12:00:05Z.tar",  # same second as the call
        "checkpoint-p_ns-c-2026-11-28T12:00:09Z.tar",
        "checkpoint-p_ns-c2-2026-11-28T12:00:09Z.tar",  # another container
        "checkpoint-q_ns-c-2026-11-28T12:00:09Z.tar",  # another pod
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "checkpoint-p_ns-c-2026-11-28T12:00:10Z.tar").symlink_to("/etc/passwd")
    since = datetime(2026, 11, 28, 12, 0, 5, 700_000, tzinfo=UTC)
    found = paths.find_archives(tmp_path, "p", "ns", "c", since=since)
    assert [p.name for p in found] == names[1:3]
