"""The archive is read once while it is warm: its export starts as soon as its sha256 is
recorded, beside the analysis, and only the report and the manifest wait for the job's end.
A real capture service and export worker on a temporary node, moto's S3 server over HTTP."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from forensic_checkpoint.agent.capture.analysis_runner import ArchiveToAnalyse
from forensic_checkpoint.agent.evidence.export import Exporter
from forensic_checkpoint.agent.evidence.export_config import ExportConfig
from forensic_checkpoint.api.agent import CaptureRequest, CaptureState, ExportPhase
from forensic_checkpoint.api.custody import CustodyAction
from forensic_checkpoint.api.forensiccheckpoint import AnalysisSummary
from forensic_checkpoint.errors import ArchiveError

from .agent_node import Node, report_writer
from .test_agent_export import export_config, kill_after_two_parts


class HeldAnalysis:
    """An analyzer that runs until the test releases it (or the capture is deleted)."""

    def __init__(self, fail: bool = False) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.fail = fail

    def __call__(
        self, archive: ArchiveToAnalyse, report: Path, request: CaptureRequest, stop: Any
    ) -> AnalysisSummary:
        self.started.set()
        while not self.release.is_set() and not stop.is_set():
            time.sleep(0.02)
        if self.fail:
            raise ArchiveError("not a checkpoint archive", reason="InvalidArchive")
        return report_writer(archive, report, request, stop)


def wait_for(what: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def counting_factory(log: list[tuple[str, Any]], part_delay: float = 0.0) -> Any:
    """Exporters whose S3 calls on the archive's object are logged (and whose parts are slow)."""

    def make(cfg: ExportConfig) -> Exporter:
        exporter = Exporter(cfg)
        client = exporter.client
        upload, get = client.upload_part, client.get_object

        def upload_part(**kwargs: Any) -> Any:
            answer = upload(**kwargs)
            log.append(("part", kwargs["PartNumber"]))
            time.sleep(part_delay)
            return answer

        def get_object(**kwargs: Any) -> Any:
            log.append(("get", kwargs["Key"]))
            return get(**kwargs)

        client.upload_part, client.get_object = upload_part, get_object
        return exporter

    return make


@pytest.fixture
def running_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """A node whose export worker runs in its thread, woken as in the agent process."""
    nodes: list[Node] = []
    held: list[HeldAnalysis] = []

    def make(sample: Path, export: ExportConfig | None, analyzer: Any, factory: Any) -> Node:
        if isinstance(analyzer, HeldAnalysis):
            held.append(analyzer)
        node = Node(tmp_path, sample, export, analyzer)
        if node.exports is not None:
            node.exports._factory = factory
            node.exports.follow(node.service)
            node.exports.start()
        nodes.append(node)
        return node

    yield make
    for analysis in held:  # a failed test never released it
        analysis.release.set()
    for node in nodes:
        if node.exports is not None:
            node.exports.stop()
        node.close()


@pytest.fixture
def exporting(
    s3_endpoint: str, bucket: str, archive: tuple[Path, str], tmp_path: Path, running_node: Any
) -> Callable[..., Node]:
    """A running node that exports to ``bucket``, its exporters' S3 calls logged in ``calls``."""

    def make(
        analyzer: Any,
        calls: list[tuple[str, Any]] | None = None,
        delay: float = 0.0,
        *,
        during_analysis: bool = True,
    ) -> Node:
        state = tmp_path / "state"
        config = export_config(s3_endpoint, bucket, state, during_analysis=during_analysis)
        factory = counting_factory([] if calls is None else calls, delay)
        node: Node = running_node(archive[0], config, analyzer, factory)
        return node

    return make


def leftovers(s3: Any, bucket: str, state: Path) -> tuple[int, Any, list[str]]:
    return (
        s3.list_objects_v2(Bucket=bucket).get("KeyCount"),
        s3.list_multipart_uploads(Bucket=bucket).get("Uploads"),
        sorted(p.name for p in (state / "exports").iterdir()),
    )


def test_archive_is_exported_beside_its_analysis(
    s3: Any, bucket: str, archive: tuple[Path, str], tmp_path: Path, exporting: Any
) -> None:
    sha = archive[1]
    calls: list[tuple[str, Any]] = []
    analysis = HeldAnalysis()
    node = exporting(analysis, calls)
    key = node.submit("web")

    def archive_exported() -> Any:
        status = node.service.status(key)
        return status if status.export and status.export.archive_ms is not None else None

    status = wait_for(archive_exported)
    assert status.state is CaptureState.ANALYZING, "exported while the analysis still runs"
    assert status.export.phase is ExportPhase.PENDING
    assert status.export.reason == "ArchiveExported"
    stored = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(stored) == 1 and stored[0].endswith(f"/{sha}.tar"), stored
    assert [c for c in calls if c[0] == "part"] == [("part", n) for n in range(1, 6)]

    calls.clear()
    analysis.release.set()
    done = wait_for(
        lambda: (s := node.service.status(key)).export.phase is ExportPhase.EXPORTED and s
    )
    assert done.state is CaptureState.COMPLETED
    assert done.export.record.archive_sha256 == sha
    assert done.export.record.report_url is not None
    assert done.export.after_finished_ms is not None and done.export.archive_ms is not None
    # The pass after Completed sent no part and did not read the archive's object back again.
    assert [c for c in calls if c[0] == "part" or c[1] == stored[0]] == [], calls
    assert [f.action for f in done.custody_events] == [
        CustodyAction.CAPTURED,
        CustodyAction.EXPORTED,
        CustodyAction.VERIFIED,
    ]
    assert leftovers(s3, bucket, tmp_path / "state")[1:] == (None, [])


def test_by_default_the_export_waits_for_the_end_of_the_analysis(
    s3: Any, bucket: str, exporting: Any
) -> None:
    """Without ``duringAnalysis`` a hashed archive is not uploaded while its analysis runs (it
    would take CPU and I/O from the analysis that Completed waits for); after it, it is."""
    analysis = HeldAnalysis()
    node = exporting(analysis, during_analysis=False)
    key = node.submit("web")
    wait_for(lambda: node.service.status(key).archive is not None)
    assert node.exports is not None and node.exports.run_due() == 0  # a pass finds nothing due
    status = node.service.status(key)
    assert status.state is CaptureState.ANALYZING
    assert status.export is not None and status.export.phase is ExportPhase.PENDING
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    analysis.release.set()
    done = wait_for(
        lambda: (s := node.service.status(key)).export.phase is ExportPhase.EXPORTED and s
    )
    assert done.export.archive_ms is None and done.export.after_finished_ms is not None


def test_capture_deleted_mid_upload_leaves_nothing(
    s3: Any, bucket: str, tmp_path: Path, exporting: Any
) -> None:
    calls: list[tuple[str, Any]] = []
    node = exporting(HeldAnalysis(), calls, 0.3)
    key = node.submit("web")
    wait_for(lambda: ("part", 1) in calls)

    result = node.service.delete(key)  # the ForensicCheckpoint was deleted
    assert result.deleted

    def ended() -> Any:
        status = node.service.status(key)
        return status if status.export and not status.export.phase.active else None

    status = wait_for(ended)
    assert status.state is CaptureState.FAILED
    assert (status.export.phase, status.export.reason) == (ExportPhase.FAILED, "ArchiveDeleted")
    assert ("part", 5) not in calls, "the upload stopped at the next part"
    assert leftovers(s3, bucket, tmp_path / "state") == (0, None, [])


def test_failed_analysis_still_exports_the_archive(
    s3: Any, bucket: str, archive: tuple[Path, str], exporting: Any
) -> None:
    sample, sha = archive
    analysis = HeldAnalysis(fail=True)
    analysis.release.set()
    node = exporting(analysis)
    key = node.submit("web")
    done = wait_for(
        lambda: (
            (s := node.service.status(key)).export and s.export.phase is ExportPhase.EXPORTED and s
        )
    )
    assert (done.state, done.reason) == (CaptureState.FAILED, "InvalidArchive")
    assert done.export.record.archive_sha256 == sha
    assert done.export.record.report_url is None
    assert "the analysis failed (InvalidArchive)" in done.export.message
    body = s3.get_object(Bucket=bucket, Key=done.export.record.url.split("/", 3)[3])["Body"]
    assert len(body.read()) == sample.stat().st_size


def test_the_export_thread_yields_the_cpu_to_the_analysis(exporting: Any) -> None:
    """Linux schedules threads alone: the export thread alone runs 10 nice steps lower, so an
    upload beside the analysis does not slow Completed on a busy node."""
    node = exporting(report_writer)
    thread = node.exports._thread
    assert thread is not None and thread.native_id is not None
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert wait_for(lambda: os.getpriority(os.PRIO_PROCESS, thread.native_id) == min(19, own + 10))
    assert os.getpriority(os.PRIO_PROCESS, 0) == own  # the process itself is unchanged


def test_export_disabled_changes_nothing(
    archive: tuple[Path, str], tmp_path: Path, running_node: Any
) -> None:
    node = running_node(archive[0], None, report_writer, None)
    status = node.capture("web")
    assert status.state is CaptureState.COMPLETED and status.export is None
    assert node.service.on_hashed == []
    assert not (tmp_path / "state" / "exports").exists()


@pytest.mark.slow
def test_agent_killed_mid_archive_upload_resumes(
    s3_endpoint: str,
    s3: Any,
    bucket: str,
    archive: tuple[Path, str],
    tmp_path: Path,
) -> None:
    """The agent dies (SIGKILL) after two of five parts of an archive uploaded beside its
    analysis; after the restart the upload resumes with the missing parts only."""
    sample, sha = archive
    root = tmp_path / "node"
    config = export_config(s3_endpoint, bucket, root / "state", during_analysis=True)
    held = HeldAnalysis()
    first_node = Node(root, sample, config, held)
    key = first_node.submit("web")
    try:
        wait_for(lambda: first_node.service.status(key).archive is not None)
    finally:
        first_node.service.shutdown(wait=False)  # its analysis never ends: the agent is gone
    kill_after_two_parts(root, s3_endpoint, bucket, tmp_path / "first.json", during_analysis=True)

    calls: list[tuple[str, Any]] = []
    restarted = Node(root, sample, config)
    try:
        on_disk = restarted.service.status(key)
        assert on_disk.state is CaptureState.ANALYZING
        assert on_disk.export is not None and on_disk.export.phase is ExportPhase.EXPORTING
        assert restarted.exports is not None
        restarted.exports._factory = counting_factory(calls)
        assert restarted.exports.run_due() == 1
        status = restarted.service.status(key)
        assert status.export is not None and status.export.reason == "ArchiveExported"
        sent = [n for what, n in calls if what == "part"]
        assert 1 not in sent and sent[-1] == 5, sent
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads") is None
        stored = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert [k.rsplit("/", 1)[1] for k in stored] == [f"{sha}.tar"]
    finally:
        restarted.close()
