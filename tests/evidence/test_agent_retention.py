"""Retention on a node's real jobs: the real capture service writes archives, reports and job
records into a state directory, and the keeper deletes exactly what the policy says, never a
held archive, and leaves a Deleted fact on each job it touched."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.factories import plain_sample

from forensic_checkpoint.agent.evidence.retention_keeper import (
    RetentionKeeper,
    parse_bytes,
    parse_duration,
    policy_from_values,
)
from forensic_checkpoint.api.agent import CaptureStatus, ExportPhase
from forensic_checkpoint.api.custody import CustodyAction
from forensic_checkpoint.domain.evidence.retention import Limits
from forensic_checkpoint.errors import ConfigError, ConflictError, NotFoundError

from .agent_node import NODE, Node
from .test_agent_export import export_config

HOUR = 3600.0
DAY = 24 * HOUR


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plain_sample("multi-proc", tmp_path_factory.mktemp("sample"))


def metric(node: Node, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(node.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


def keeper(node: Node, values: dict[str, Any]) -> RetentionKeeper:
    policy = policy_from_values(values)
    assert policy is not None
    return RetentionKeeper(
        store=node.store,
        policy=policy,
        node_name=NODE,
        checkpoint_dir=node.checkpoint_dir,
        metrics=node.metrics,
    )


def on_disk(status: CaptureStatus) -> bool:
    assert status.archive is not None
    return Path(status.archive.path).exists()


def test_values_are_parsed_with_units() -> None:
    policy = policy_from_values(
        {
            "protectUnexported": False,
            "node": {"maxAge": "7d", "maxBytes": "20Gi"},
            "container": {"maxCount": 3},
            "containerRules": [{"namespace": "prod-*", "maxCount": 10, "maxBytes": "500M"}],
        }
    )
    assert policy is not None
    assert policy.node_limits == Limits(max_age=timedelta(days=7), max_bytes=20 * 2**30)
    assert policy.container_default == Limits(max_count=3)
    assert policy.container_rules[0].limits == Limits(max_count=10, max_bytes=500 * 10**6)
    assert policy.container_rules[0].namespace == "prod-*"
    assert policy.protect_unexported is False
    assert policy_from_values(None) is None
    assert policy_from_values({"enabled": False}) is None
    assert policy_from_values({}).protect_unexported is True  # type: ignore[union-attr]
    assert parse_duration(90) == timedelta(seconds=90)
    assert parse_bytes("1Ki") == 1024
    with pytest.raises(ConfigError):
        parse_duration("a week")
    with pytest.raises(ConfigError):
        parse_bytes("5 GB")


@pytest.mark.slow  # six captures through a whole agent node
def test_retention_deletes_exactly_what_the_policy_says(
    small_archive: Path, tmp_path: Path
) -> None:
    node = Node(tmp_path, small_archive)
    try:
        # web/app: 4 archives, the 3 h one held; db/main: 5 d old, and a held one 10 d old.
        node.kubelet.ages = [1 * HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 5 * DAY, 10 * DAY]
        web1 = node.capture("web")
        web2 = node.capture("web")
        web3 = node.capture("web", hold=True)
        web4 = node.capture("web")
        db5 = node.capture("db", "main")
        db10 = node.capture("db", "main", hold=True)
    finally:
        node.close()
    size = web1.archive.size_bytes  # type: ignore[union-attr]
    keep = keeper(
        node,
        {"protectUnexported": False, "container": {"maxCount": 2}, "node": {"maxAge": "3d"}},
    )

    plan = keep.run_once()

    assert sorted((r.record.key, r.bound.value) for r in plan.delete) == sorted(
        [(web4.key, "RetentionMaxCount"), (db5.key, "RetentionMaxAge")]
    )
    after = {s.key: node.service.status(s.key) for s in (web1, web2, web3, web4, db5, db10)}
    assert [k for k, s in after.items() if not on_disk(s)] == [web4.key, db5.key]
    for key in (web4.key, db5.key):
        status = after[key]
        assert status.archive_deleted_at is not None
        record = node.store.get(key)
        assert record is not None and record.report_path is not None
        assert not Path(record.report_path).exists(), "the report goes with its archive"
        assert [f.action for f in status.custody_events] == [
            CustodyAction.CAPTURED,
            CustodyAction.DELETED,
        ]
        deleted = status.custody_events[-1]
        assert deleted.reason == status.archive_deleted_reason
        assert deleted.sha256 == status.archive.sha256  # type: ignore[union-attr]
        assert deleted.message and "max" in deleted.message
    assert after[web3.key].held and after[db10.key].held
    assert (plan.held_bytes, plan.bytes_after) == (2 * size, 4 * size)
    deletions = "forensic_checkpoint_agent_retention_deletions_total"
    assert metric(node, deletions, reason="RetentionMaxCount") == 1
    assert metric(node, deletions, reason="RetentionMaxAge") == 1
    assert metric(node, "forensic_checkpoint_agent_retention_held_bytes") == 2 * size
    assert metric(node, "forensic_checkpoint_agent_retention_archive_bytes") == 4 * size
    # The service answers for a deleted archive with a reason, not a missing file.
    with pytest.raises(NotFoundError, match="retention deleted the archive"):
        node.service.archive_file(web4.key)

    # A second pass changes nothing: the policy is met.
    assert keep.run_once().delete == []
    assert len(node.service.status(web4.key).custody_events) == 2

    # Lifting the hold puts the 3 h archive back under the container bound; the 10 d one
    # stays held, however old.
    node.service.set_hold(web3.key, False)
    plan = keep.run_once()
    assert [(r.record.key, r.bound.value) for r in plan.delete] == [(web3.key, "RetentionMaxCount")]
    assert not on_disk(node.service.status(web3.key))
    assert on_disk(node.service.status(db10.key))
    assert on_disk(node.service.status(web1.key)) and on_disk(node.service.status(web2.key))


def test_unexported_evidence_is_kept_until_exported(
    s3_endpoint: str, bucket: str, small_archive: Path, tmp_path: Path
) -> None:
    node = Node(tmp_path, small_archive, export_config(s3_endpoint, bucket, tmp_path / "state"))
    try:
        node.kubelet.ages = [1 * HOUR, 2 * HOUR]
        newer = node.capture("web")
        older = node.capture("web")
    finally:
        node.close()
    keep = keeper(node, {"protectUnexported": True, "container": {"maxCount": 1}})

    plan = keep.run_once()
    assert plan.delete == [] and [r.record.key for r in plan.deferred] == [older.key]
    assert on_disk(node.service.status(older.key))
    assert metric(node, "forensic_checkpoint_agent_retention_deferred") == 1

    assert node.exports is not None and node.exports.run_due() == 2
    plan = keep.run_once()
    assert [r.record.key for r in plan.delete] == [older.key]
    gone = node.service.status(older.key)
    assert not on_disk(gone)
    assert gone.export is not None and gone.export.phase is ExportPhase.EXPORTED
    assert [f.action for f in gone.custody_events] == [
        CustodyAction.CAPTURED,
        CustodyAction.EXPORTED,
        CustodyAction.VERIFIED,
        CustodyAction.DELETED,
    ]
    assert [f.action for f in node.service.status(newer.key).custody_events][-1] is (
        CustodyAction.VERIFIED
    )


def test_delete_refuses_held_evidence_that_exists_nowhere_else(
    small_archive: Path, tmp_path: Path
) -> None:
    node = Node(tmp_path, small_archive)
    try:
        held = node.capture("web", hold=True)
    finally:
        node.close()
    with pytest.raises(ConflictError, match="legal hold") as refused:
        node.service.delete(held.key)
    assert getattr(refused.value, "reason", "") == "HeldNotExported"
    assert on_disk(node.service.status(held.key))
    node.service.set_hold(held.key, False)
    result = node.service.delete(held.key)
    assert held.archive is not None and held.archive.path in result.deleted
    assert not (node.store.holds_dir / held.key).exists()
