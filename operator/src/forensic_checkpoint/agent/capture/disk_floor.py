"""Refuse a capture when the node's disk is too full for it (issue 15, item 10).

A checkpoint archive holds the container's memory, so a capture can fill the node's root
filesystem, where the kubelet writes archives and the agent keeps its state. Before the
kubelet call the agent checks each of those filesystems with ``statvfs`` and refuses the
capture when the space left to unprivileged users is below the floor: the larger of
``--min-free-bytes`` and ``--min-free-percent`` of the filesystem.

The archive's size is not known in advance. Its main part is the container's memory, which the
agent does not know without asking the kubelet's stats API (another call per capture), so the
floor is only checked against the space free now: it is a margin, not a reservation, and
captures running at the same time share it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from forensic_checkpoint.errors import ConfigError

GIB = 1 << 30
DEFAULT_MIN_FREE_BYTES = 2 * GIB
DEFAULT_MIN_FREE_PERCENT = 5.0

#: ``(free bytes for unprivileged users, filesystem size in bytes)`` of the filesystem of a path.
FreeSpace = Callable[[Path], tuple[int, int]]


def statvfs_space(path: Path) -> tuple[int, int]:
    result = os.statvfs(path)
    return result.f_bavail * result.f_frsize, result.f_blocks * result.f_frsize


@dataclass(frozen=True, slots=True)
class DiskFloor:
    """The free space a capture must leave; both limits 0 turns the check off."""

    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    min_free_percent: float = DEFAULT_MIN_FREE_PERCENT

    def __post_init__(self) -> None:
        if self.min_free_bytes < 0:
            raise ConfigError(f"--min-free-bytes must be >= 0, got {self.min_free_bytes}")
        if not 0 <= self.min_free_percent < 100:
            raise ConfigError(
                f"--min-free-percent must be in [0, 100), got {self.min_free_percent}"
            )

    def floor(self, size: int) -> int:
        return max(self.min_free_bytes, int(size * self.min_free_percent / 100))

    def refusal(self, paths: Iterable[Path], free_space: FreeSpace = statvfs_space) -> str | None:
        """Why a capture must not start (names the filesystem, its free bytes and the floor),
        or ``None``. A path that cannot be checked is not a refusal: the kubelet call reports
        a missing directory itself."""
        for path in paths:
            try:
                free, size = free_space(path)
            except OSError:
                continue
            floor = self.floor(size)
            if free < floor:
                return (
                    f"the filesystem holding {path} has {free} bytes free, below the floor of "
                    f"{floor} bytes (the larger of --min-free-bytes={self.min_free_bytes} and "
                    f"--min-free-percent={self.min_free_percent:g} of {size} bytes): "
                    "the capture was refused and the kubelet was not called"
                )
        return None
