"""`kubectl forensic get-archive` without a cluster: the file gets its name only after the bytes,
the agent's header and the custody chain agree with the status; the progress bar draws only on
a terminal. (Through the API server on a real node: tests/realnode/test_in_cluster.py.)"""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.factories import by_agent, requested

from forensic_checkpoint.api.agent import SHA256_HEADER
from forensic_checkpoint.api.custody import CustodyAction, KubeletResponse
from forensic_checkpoint.api.forensiccheckpoint import (
    ArchiveStatus,
    ContainerStatus,
    ForensicCheckpoint,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.cli.kubectl_forensic.archive import custody_problems, download_verified
from forensic_checkpoint.errors import ClusterError, IntegrityError
from forensic_checkpoint.progress import Progress, human_bytes

UID = "0b6b2e56-6f59-4c39-9b0a-8d0f3f1c2a11"
DATA = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(DATA).hexdigest()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Body:
    """An agent's answer: ``data``, then (with ``fail_after``) a dropped connection."""

    def __init__(self, data: bytes, *, header: str = SHA, fail_after: int | None = None) -> None:
        self.status = 200
        self._data = io.BytesIO(data)
        self._header = header
        self._fail_after = fail_after

    def read(self, amt: int) -> bytes:
        if self._fail_after is not None and self._data.tell() >= self._fail_after:
            raise ConnectionResetError("connection reset by peer")
        return self._data.read(min(amt, 4096))

    def getheader(self, name: str) -> str | None:
        return self._header if name == SHA256_HEADER else None


def checkpoint(sha: str = SHA, container: str = "app") -> ForensicCheckpoint:
    t0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    chain = by_agent(
        requested(UID, t0),
        UID,
        CustodyAction.CAPTURED,
        t0 + timedelta(seconds=2),
        "node-1",
        container=container,
        node="node-1",
        kubelet=KubeletResponse(status_code=200, message="/var/lib/kubelet/checkpoints/x.tar"),
        sha256=sha,
        size_bytes=len(DATA),
    )
    archive = ArchiveStatus(path="/x.tar", sha256=sha, size_bytes=len(DATA), captured_at=t0)
    return ForensicCheckpoint(
        metadata={"name": "fcp", "namespace": "default", "uid": UID},
        spec=ForensicCheckpointSpec(pod_name="p"),
        status=ForensicCheckpointStatus(
            node_name="node-1",
            containers=[ContainerStatus(name=container, capture_key="k", archive=archive)],
            custody=chain,
        ),
    )


def download(body: Body, out: Path, fcp: ForensicCheckpoint, progress: Progress) -> int:
    return download_verified(
        body, out, SHA, progress=progress, check=lambda got: custody_problems(fcp, "app", got)
    )


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_verified_download_gets_its_name_mode_0600(tmp_path: Path) -> None:
    out = tmp_path / "evidence.tar"
    size = download(Body(DATA), out, checkpoint(), Progress("x", quiet=True))
    assert size == len(DATA)
    assert out.read_bytes() == DATA
    assert out.stat().st_mode & 0o777 == 0o600
    assert leftovers(tmp_path) == ["evidence.tar"]


@pytest.mark.parametrize(
    ("body", "fcp", "message"),
    [
        (Body(DATA[:-1] + b"X"), checkpoint(), "sha256 mismatch: downloaded"),
        (Body(DATA, header="0" * 64), checkpoint(), f"agent header {'0' * 64}"),
        # The status hash matches, but the chain recorded another capture of this container.
        (Body(DATA), checkpoint(sha="1" * 64), "no Captured entry of app records sha256"),
        (Body(DATA), checkpoint(container="other"), "no Captured entry of app"),
    ],
    ids=["bytes", "agent-header", "chain-hash", "chain-container"],
)
def test_a_mismatch_leaves_no_file(
    tmp_path: Path, body: Body, fcp: ForensicCheckpoint, message: str
) -> None:
    out = tmp_path / "evidence.tar"
    with pytest.raises(IntegrityError, match="not written") as refused:
        download(body, out, fcp, Progress("x", quiet=True))
    assert message in refused.value.message
    assert leftovers(tmp_path) == []


def test_a_tampered_custody_chain_leaves_no_file(tmp_path: Path) -> None:
    fcp = checkpoint()
    assert fcp.status is not None
    first = fcp.status.custody[0]
    fcp.status.custody[0] = first.model_copy(update={"at": first.at - timedelta(hours=1)})
    with pytest.raises(IntegrityError, match=r"custody: entry 0: content does not match"):
        download(Body(DATA), tmp_path / "e.tar", fcp, Progress("x", quiet=True))
    assert leftovers(tmp_path) == []


def test_a_broken_download_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"broke off after \d+ bytes: connection reset"):
        download(Body(DATA, fail_after=100_000), tmp_path / "e.tar", checkpoint(), Progress("x"))
    assert leftovers(tmp_path) == []


def test_an_existing_file_is_untouched_by_a_refused_download(tmp_path: Path) -> None:
    out = tmp_path / "evidence.tar"
    out.write_bytes(b"earlier")
    with pytest.raises(IntegrityError):
        download(Body(b"tampered"), out, checkpoint(), Progress("x", quiet=True))
    assert out.read_bytes() == b"earlier"
    assert leftovers(tmp_path) == ["evidence.tar"]


def test_the_progress_bar_draws_on_a_terminal(tmp_path: Path) -> None:
    terminal = Terminal()
    now = [0.0]
    progress = Progress("evidence.tar", 4 << 20, stream=terminal, clock=lambda: now[0])
    for _ in range(2):
        now[0] += 1.0
        progress.advance(1 << 20)
    progress.close()
    drawn = terminal.getvalue()
    assert drawn.startswith("\r") and drawn.endswith("\n")
    last = drawn.rstrip("\n").rsplit("\r", 1)[1]
    assert "evidence.tar" in last
    assert " 50%" in last and "2.0 MiB / 4.0 MiB" in last
    assert "1.0 MiB/s" in last and "ETA 0:02" in last


def test_the_progress_bar_is_quiet_when_piped_or_asked(tmp_path: Path) -> None:
    piped, asked = io.StringIO(), Terminal()
    for progress in (Progress("a", 10, stream=piped), Progress("a", 10, stream=asked, quiet=True)):
        with progress:
            progress.advance(5)
    assert piped.getvalue() == "" and asked.getvalue() == ""
    # The download itself draws through it: nothing on a pipe.
    download(Body(DATA), tmp_path / "e.tar", checkpoint(), Progress("e", len(DATA), stream=piped))
    assert piped.getvalue() == ""


def test_the_progress_bar_without_a_total_shows_bytes_and_rate() -> None:
    now = [0.0]
    progress = Progress("scan", stream=Terminal(), clock=lambda: now[0])
    now[0] = 2.0
    progress.done = 3 << 30
    assert progress.line() == "scan  3.0 GiB  1.5 GiB/s"
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB"
