"""Retention plans over a snapshot of the jobs, then deletes one archive at a time. A job's state
can change in between (an analyst sets a hold, an upload starts, an export is reset), so the
keeper checks each archive again, under the store's lock, at the moment it deletes: these tests
change the state right after the plan and expect the archive to stay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.factories import plain_sample

from forensic_checkpoint.agent.evidence import retention_keeper
from forensic_checkpoint.agent.jobs import JobRecord
from forensic_checkpoint.api.agent import CaptureStatus, ExportPhase, ExportProgress
from forensic_checkpoint.api.custody import CustodyAction
from forensic_checkpoint.domain.evidence.retention import plan_retention

from .agent_node import Node
from .test_agent_retention import keeper

HOUR = 3600.0


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plain_sample("multi-proc", tmp_path_factory.mktemp("sample"))


def _two_captures(tmp_path: Path, sample: Path) -> tuple[Node, CaptureStatus]:
    """Two archives of one container; ``maxCount: 1`` makes retention delete the older."""
    node = Node(tmp_path, sample)
    try:
        node.kubelet.ages = [1 * HOUR, 2 * HOUR]
        node.capture("web")
        older = node.capture("web")
    finally:
        node.close()
    return node, older


def _export(node: Node, key: str, phase: ExportPhase) -> None:
    with node.store.locked():
        record = node.store.get(key)
        assert record is not None
        record.status.export = ExportProgress(phase=phase)
        node.store.save(record)


def _run_with_change_after_plan(
    node: Node,
    monkeypatch: pytest.MonkeyPatch,
    values: dict[str, Any],
    change: Callable[[], object],
) -> str:
    """One retention pass whose state changes between planning and deleting; the planned key."""
    planned: list[str] = []
    real_plan = plan_retention

    def plan_then_change(*args: Any, **kwargs: Any) -> Any:
        plan = real_plan(*args, **kwargs)
        planned.extend(r.record.key for r in plan.delete)
        change()
        return plan

    monkeypatch.setattr(retention_keeper, "plan_retention", plan_then_change)
    keeper(node, values).run_once()
    (key,) = planned
    return key


def _kept(node: Node, key: str) -> JobRecord:
    record = node.store.get(key)
    assert record is not None and record.status.archive is not None
    assert Path(record.status.archive.path).exists(), "retention deleted it after all"
    assert record.status.archive_deleted_at is None
    assert CustodyAction.DELETED not in [f.action for f in record.status.custody_events]
    return record


def test_a_hold_set_after_the_plan_keeps_the_archive(
    small_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, older = _two_captures(tmp_path, small_archive)
    values = {"protectUnexported": False, "container": {"maxCount": 1}}
    key = _run_with_change_after_plan(
        node, monkeypatch, values, lambda: node.service.set_hold(older.key, True)
    )
    assert key == older.key
    assert _kept(node, key).status.held


def test_an_upload_started_after_the_plan_keeps_the_archive(
    small_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, older = _two_captures(tmp_path, small_archive)
    values = {"protectUnexported": False, "container": {"maxCount": 1}}
    key = _run_with_change_after_plan(
        node, monkeypatch, values, lambda: _export(node, older.key, ExportPhase.EXPORTING)
    )
    assert key == older.key
    export = _kept(node, key).status.export
    assert export is not None and export.phase is ExportPhase.EXPORTING


def test_an_export_reset_after_the_plan_keeps_the_unexported_archive(
    small_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``protectUnexported``: planned as exported, found unexported at delete time."""
    node, older = _two_captures(tmp_path, small_archive)
    _export(node, older.key, ExportPhase.EXPORTED)
    values = {"protectUnexported": True, "container": {"maxCount": 1}}
    key = _run_with_change_after_plan(
        node, monkeypatch, values, lambda: _export(node, older.key, ExportPhase.PENDING)
    )
    assert key == older.key
    _kept(node, key)
