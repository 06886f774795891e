"""Refuse a capture when the node's disk is too full for it (issue 15, item 10).

A checkpoint archive holds the container's memory, so a capture can fill the node's root
filesystem, where the kubelet writes archives and the agent keeps its state. Before the
kubelet call the agent checks each of those filesystems with ``statvfs`` and refuses the
capture when the space left to unprivileged users is below the floor: the larger of
``--min-free-bytes`` and ``--min-free-percent`` of the filesystem.

The archive's size is not known in advance. Its main part is the container's memory, which the
agent does not know without asking the kubelet's stats API (another call per capture), so the
floor is checked against the space free now less what the captures in flight will write
(:class:`FloorGate`): each admitted capture reserves the size of the largest archive this agent
has recorded until its own archive has landed (from then on the filesystem counts it). Without
that, a burst of captures all checked before their archives land would cross the floor
together, by up to one archive per capture worker.
"""

from __future__ import annotations

import os
import threading
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

    def refusal(
        self, paths: Iterable[Path], free_space: FreeSpace = statvfs_space, pending: int = 0
    ) -> str | None:
        """Why a capture must not start (names the filesystem, its free bytes and the floor),
        or ``None``. ``pending``: bytes still to be written to the first path (the archives of
        the captures in flight and of this one). A path that cannot be checked is not a
        refusal: the kubelet call reports a missing directory itself."""
        if not self.min_free_bytes and not self.min_free_percent:
            return None  # the check is off
        for position, path in enumerate(paths):
            try:
                free, size = free_space(path)
            except OSError:
                continue
            floor = self.floor(size)
            expected = pending if position == 0 else 0
            if free - expected < floor:
                after = (
                    f" (less {expected} bytes expected from the captures in flight and this one)"
                    if expected
                    else ""
                )
                return (
                    f"the filesystem holding {path} has {free} bytes free{after}, below the floor"
                    f" of {floor} bytes (the larger of --min-free-bytes={self.min_free_bytes} and "
                    f"--min-free-percent={self.min_free_percent:g} of {size} bytes): "
                    "the capture was refused and the kubelet was not called"
                )
        return None


class FloorGate:
    """The floor check of each capture, counting the archives of the captures in flight.

    ``admit`` checks and reserves in one step (the capture workers check at the same time);
    the reservation is the largest archive recorded on this node (``observe``), 0 until one
    is; ``release`` once the capture's archive has landed or its call ended without one.
    """

    def __init__(self, floor: DiskFloor, paths: tuple[Path, ...], free_space: FreeSpace) -> None:
        self.floor, self._paths, self._free_space = floor, paths, free_space
        self._lock = threading.Lock()
        self._reserved: dict[str, int] = {}
        self.estimate = 0

    def observe(self, size: int) -> None:
        with self._lock:
            self.estimate = max(self.estimate, size)

    def admit(self, key: str) -> str | None:
        """Why ``key``'s capture must not start, or ``None`` with its archive reserved."""
        with self._lock:
            pending = sum(self._reserved.values()) + self.estimate
            refusal = self.floor.refusal(self._paths, self._free_space, pending)
            if refusal is None:
                self._reserved[key] = self.estimate
            return refusal

    def release(self, key: str) -> None:
        with self._lock:
            self._reserved.pop(key, None)

    def reserved(self) -> int:
        with self._lock:
            return sum(self._reserved.values())
