"""The free-space floor: a capture on a too-full node fails before the kubelet is called."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.agent.agent_support import DirKubelet, hashing_analyzer, request, wait_terminal
from tests.factories import capture_service

from forensic_checkpoint.agent.capture.disk_floor import GIB, DiskFloor
from forensic_checkpoint.agent.capture.service import CaptureService
from forensic_checkpoint.api.agent import CaptureState
from forensic_checkpoint.domain.failures.model import FailureReason
from forensic_checkpoint.errors import ConfigError

SIZE = 100 * GIB


def _service(
    tmp_path: Path, sample: Path, started: list[CaptureService], **options: object
) -> tuple[CaptureService, DirKubelet]:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    kubelet = DirKubelet(checkpoints, sample)
    service = capture_service(
        tmp_path / "state", kubelet, checkpoints, hashing_analyzer, poll_interval=0.1, **options
    )
    started.append(service)
    return service, kubelet


def test_low_space_fails_the_capture_without_calling_the_kubelet(
    tmp_path: Path,
    sample_tar: Path,
    services: list[CaptureService],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """statvfs itself reports 1 GiB free of 100 GiB: below the default 2 GiB / 5 % floor."""
    real = os.statvfs

    class Low:
        f_frsize = 4096
        f_bavail = GIB // 4096
        f_blocks = SIZE // 4096

    monkeypatch.setattr(
        os, "statvfs", lambda path: Low() if "checkpoints" in str(path) else real(path)
    )
    service, kubelet = _service(tmp_path, sample_tar, services)
    service.submit(request("uid1-app"))
    done = wait_terminal(service, "uid1-app")
    assert done.state is CaptureState.FAILED
    assert done.reason == FailureReason.INSUFFICIENT_DISK_SPACE.value == "InsufficientDiskSpace"
    assert done.message is not None
    for needle in (str(tmp_path / "checkpoints"), f"{GIB} bytes free", f"floor of {5 * GIB}"):
        assert needle in done.message, done.message
    assert done.remediation and "minFreeBytes" in done.remediation
    assert kubelet.calls == [], "the kubelet must not be called"
    assert done.kubelet_status_code is None


def test_the_state_directory_is_checked_too(
    tmp_path: Path, sample_tar: Path, services: list[CaptureService]
) -> None:
    def free_space(path: Path) -> tuple[int, int]:
        return (GIB if path.name == "state" else 50 * GIB), SIZE

    service, kubelet = _service(
        tmp_path, sample_tar, services, free_space=free_space, disk_floor=DiskFloor(2 * GIB, 0)
    )
    service.submit(request("uid1-app"))
    done = wait_terminal(service, "uid1-app")
    assert done.reason == "InsufficientDiskSpace"
    assert str(tmp_path / "state") in (done.message or "")
    assert kubelet.calls == []


def test_enough_space_lets_the_capture_proceed(
    tmp_path: Path, sample_tar: Path, services: list[CaptureService]
) -> None:
    seen: list[Path] = []

    def free_space(path: Path) -> tuple[int, int]:
        seen.append(path)
        return 10 * GIB, SIZE  # above 2 GiB and above 5 % of 100 GiB

    service, kubelet = _service(tmp_path, sample_tar, services, free_space=free_space)
    service.submit(request("uid1-app"))
    done = wait_terminal(service, "uid1-app")
    assert done.state is CaptureState.COMPLETED, done
    assert len(kubelet.calls) == 1
    assert seen == [tmp_path / "checkpoints", tmp_path / "state"]


@pytest.mark.parametrize(
    ("floor", "free", "refused"),
    [
        (DiskFloor(2 * GIB, 0), 2 * GIB - 1, True),
        (DiskFloor(2 * GIB, 0), 2 * GIB, False),
        (DiskFloor(0, 10), 10 * GIB - 1, True),  # 10 % of 100 GiB is the larger limit
        (DiskFloor(0, 0), 0, False),  # both 0: the check is off
    ],
)
def test_the_floor_is_the_larger_limit(floor: DiskFloor, free: int, refused: bool) -> None:
    reason = floor.refusal([Path("/x")], lambda _: (free, SIZE))
    assert (reason is not None) is refused


def test_an_unreadable_filesystem_is_not_a_refusal() -> None:
    def broken(path: Path) -> tuple[int, int]:
        raise FileNotFoundError(path)

    assert DiskFloor().refusal([Path("/missing")], broken) is None


@pytest.mark.parametrize(("free_bytes", "percent"), [(-1, 0.0), (0, 100.0), (0, -1.0)])
def test_bad_floors_are_config_errors(free_bytes: int, percent: float) -> None:
    with pytest.raises(ConfigError, match="min-free"):
        DiskFloor(free_bytes, percent)
