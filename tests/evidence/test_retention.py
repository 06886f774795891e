"""Retention decisions as tables: each row is archives + policy -> exactly the keys deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forensic_checkpoint.domain.evidence.deletion import HOLD_KEY, is_held
from forensic_checkpoint.domain.evidence.retention import (
    ArchiveRecord,
    Bound,
    ContainerRule,
    Limits,
    RetentionPolicy,
    Scope,
    on_checkpoint_deleted,
    plan_retention,
)
from forensic_checkpoint.errors import ConfigError

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def rec(
    key: str,
    age_days: float,
    size: int = 100,
    *,
    container: str = "app",
    pod: str = "web-1",
    namespace: str = "default",
    node: str = "node-a",
    exported: bool = True,
    held: bool = False,
    workload: str | None = None,
) -> ArchiveRecord:
    return ArchiveRecord(
        key=key,
        node=node,
        namespace=namespace,
        pod=pod,
        container=container,
        created=NOW - timedelta(days=age_days),
        size_bytes=size,
        exported=exported,
        held=held,
        workload=workload,
    )


CASES = [
    # id, records, policy, expected deleted keys (newest first), expected deferred keys
    ("no-limits-keeps-all", [rec("a", 1), rec("b", 400)], RetentionPolicy(), [], []),
    (
        "container-max-count-deletes-oldest",
        [rec("a", 1), rec("b", 2), rec("c", 3), rec("d", 4)],
        RetentionPolicy(container_default=Limits(max_count=2)),
        ["c", "d"],
        [],
    ),
    (
        "max-count-zero-deletes-all",
        [rec("a", 1), rec("b", 2)],
        RetentionPolicy(container_default=Limits(max_count=0)),
        ["a", "b"],
        [],
    ),
    (
        "max-count-applies-per-container",
        [
            rec("a", 1),
            rec("b", 2),
            rec("x", 3, container="sidecar"),
            rec("y", 4, container="sidecar"),
        ],
        RetentionPolicy(container_default=Limits(max_count=1)),
        ["b", "y"],
        [],
    ),
    (
        "max-age-boundary-is-kept",
        [rec("a", 6.9), rec("b", 7), rec("c", 7.01)],
        RetentionPolicy(container_default=Limits(max_age=7 * DAY)),
        ["c"],
        [],
    ),
    (
        "max-bytes-exact-fit-is-kept",
        [rec("a", 1, 300), rec("b", 2, 200), rec("c", 3, 1)],
        RetentionPolicy(container_default=Limits(max_bytes=500)),
        ["c"],
        [],
    ),
    (
        "max-bytes-never-keeps-older-after-newer-went",
        [rec("a", 1, 300), rec("b", 2, 300), rec("c", 3, 10)],
        RetentionPolicy(container_default=Limits(max_bytes=500)),
        ["b", "c"],
        [],
    ),
    (
        "single-archive-larger-than-budget-goes",
        [rec("a", 1, 900)],
        RetentionPolicy(node_limits=Limits(max_bytes=500)),
        ["a"],
        [],
    ),
    (
        "node-max-bytes-across-containers",
        [rec("a", 1, 200), rec("x", 2, 200, container="sidecar"), rec("b", 3, 200)],
        RetentionPolicy(node_limits=Limits(max_bytes=450)),
        ["b"],
        [],
    ),
    (
        "node-max-count-after-container-scope",
        [
            rec("a", 1),
            rec("b", 2),
            rec("c", 3),
            rec("x", 4, container="sidecar"),
            rec("y", 5, container="sidecar"),
        ],
        RetentionPolicy(node_limits=Limits(max_count=2), container_default=Limits(max_count=2)),
        ["c", "x", "y"],
        [],
    ),
    (
        "nodes-are-bounded-separately",
        [rec("a", 1, node="n1"), rec("b", 2, node="n1"), rec("c", 3, node="n2")],
        RetentionPolicy(node_limits=Limits(max_count=1)),
        ["b"],
        [],
    ),
    (
        "ties-broken-by-key-larger-is-newer",
        [rec("k1", 2), rec("k3", 2), rec("k2", 2)],
        RetentionPolicy(container_default=Limits(max_count=1)),
        ["k2", "k1"],
        [],
    ),
    (
        "held-is-never-deleted-even-when-oldest",
        [rec("a", 1), rec("b", 2), rec("old", 900, held=True)],
        RetentionPolicy(container_default=Limits(max_count=1, max_age=30 * DAY)),
        ["b"],
        [],
    ),
    (
        "held-does-not-count-against-bounds",
        [rec("h1", 1, 1000, held=True), rec("h2", 2, 1000, held=True), rec("a", 3, 100)],
        RetentionPolicy(node_limits=Limits(max_count=1, max_bytes=150)),
        [],
        [],
    ),
    (
        "unexported-deferred-when-protected",
        [rec("a", 1), rec("b", 2, exported=False), rec("c", 3)],
        RetentionPolicy(container_default=Limits(max_count=1), protect_unexported=True),
        ["c"],
        ["b"],
    ),
    (
        "unexported-deleted-when-not-protected",
        [rec("a", 1), rec("b", 2, exported=False)],
        RetentionPolicy(container_default=Limits(max_count=1)),
        ["b"],
        [],
    ),
    (
        "deferred-still-counts-at-node-scope",
        [rec("a", 1, 100), rec("b", 2, 400, exported=False), rec("x", 3, 100, container="s")],
        RetentionPolicy(
            container_rules=(ContainerRule(Limits(max_age=1.5 * DAY), container="app"),),
            node_limits=Limits(max_bytes=550),
            protect_unexported=True,
        ),
        ["x"],
        ["b"],
    ),
    (
        "container-rule-first-match-wins",
        [
            rec("p1", 1, namespace="prod"),
            rec("p2", 2, namespace="prod"),
            rec("p3", 3, namespace="prod"),
            rec("d1", 1, namespace="dev"),
            rec("d2", 2, namespace="dev"),
        ],
        RetentionPolicy(
            container_default=Limits(max_count=1),
            container_rules=(
                ContainerRule(Limits(max_count=3), namespace="prod"),
                ContainerRule(Limits(max_count=0), namespace="*"),
            ),
        ),
        ["d1", "d2"],
        [],
    ),
    (
        "workload-groups-archives-of-recreated-pods",
        [
            rec("a", 1, pod="web-7d9f-abc", workload="web"),
            rec("b", 2, pod="web-7d9f-xyz", workload="web"),
        ],
        RetentionPolicy(container_default=Limits(max_count=1)),
        ["b"],
        [],
    ),
    (
        "without-workload-each-pod-is-its-own-container",
        [rec("a", 1, pod="web-abc"), rec("b", 2, pod="web-xyz")],
        RetentionPolicy(container_default=Limits(max_count=1)),
        [],
        [],
    ),
]


@pytest.mark.parametrize(
    ("records", "policy", "deleted", "deferred"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_plan(
    records: list[ArchiveRecord],
    policy: RetentionPolicy,
    deleted: list[str],
    deferred: list[str],
) -> None:
    plan = plan_retention(records, policy, NOW)
    assert plan.delete_keys == deleted
    assert [r.record.key for r in plan.deferred] == deferred
    kept = {r.key for r in plan.keep}
    assert kept | set(deleted) | set(deferred) == {r.key for r in records if not r.held}
    assert not any(r.record.held for r in plan.delete)
    total = sum(r.size_bytes for r in records)
    assert plan.bytes_after == total - sum(r.record.size_bytes for r in plan.delete)


def test_reasons_name_the_bound_and_scope() -> None:
    records = [rec("a", 1, 300), rec("b", 2, 300), rec("c", 40, 1)]
    policy = RetentionPolicy(
        container_default=Limits(max_age=30 * DAY), node_limits=Limits(max_bytes=500)
    )
    plan = plan_retention(records, policy, NOW)
    reasons = {r.record.key: (r.bound, r.scope) for r in plan.delete}
    assert reasons == {
        "c": (Bound.MAX_AGE, Scope.CONTAINER),
        "b": (Bound.MAX_BYTES, Scope.NODE),
    }
    assert "maxBytes 500" in plan.delete[0].detail
    assert plan.held_bytes == 0


def test_held_bytes_are_reported() -> None:
    plan = plan_retention([rec("h", 1, 777, held=True), rec("a", 1, 5)], RetentionPolicy(), NOW)
    assert plan.held_bytes == 777
    assert plan.bytes_after == 782


def test_input_order_does_not_change_the_plan() -> None:
    records = [rec(f"k{i}", i % 4, 50 + i) for i in range(12)]
    policy = RetentionPolicy(
        container_default=Limits(max_count=5), node_limits=Limits(max_bytes=300)
    )
    forward = plan_retention(records, policy, NOW)
    backward = plan_retention(list(reversed(records)), policy, NOW)
    assert forward.delete_keys == backward.delete_keys


@pytest.mark.parametrize(
    ("exported", "held", "delete", "reason"),
    [
        (True, True, True, "Exported"),
        (True, False, True, "Exported"),
        (False, False, True, "NotHeld"),
        (False, True, False, "HeldNotExported"),
    ],
)
def test_local_archive_on_checkpoint_deletion(
    exported: bool, held: bool, delete: bool, reason: str
) -> None:
    decision = on_checkpoint_deleted(rec("a", 1, exported=exported, held=held))
    assert (decision.delete, decision.reason) == (delete, reason)


@pytest.mark.parametrize(
    ("metadata", "held"),
    [
        ({}, False),
        ({"labels": {HOLD_KEY: "true"}}, True),
        ({"annotations": {HOLD_KEY: "True "}}, True),
        ({"labels": {HOLD_KEY: "false"}}, False),
        ({"labels": {"other": "true"}}, False),
    ],
)
def test_legal_hold_from_label_or_annotation(metadata: dict[str, Any], held: bool) -> None:
    assert HOLD_KEY == "forensic-checkpoint.dev/hold"
    assert is_held(metadata) is held


@pytest.mark.parametrize(
    "limits", [{"max_count": -1}, {"max_bytes": -5}, {"max_age": timedelta(seconds=-1)}]
)
def test_negative_limits_are_config_errors(limits: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Limits(**limits)  # type: ignore[arg-type]


@st.composite
def _populations(draw: st.DrawFn) -> tuple[list[ArchiveRecord], RetentionPolicy]:
    count = draw(st.integers(min_value=0, max_value=25))
    records = [
        rec(
            f"k{i:02d}",
            draw(st.integers(min_value=0, max_value=60)),
            draw(st.integers(min_value=0, max_value=500)),
            container=draw(st.sampled_from(["app", "sidecar"])),
            node=draw(st.sampled_from(["n1", "n2"])),
            held=draw(st.booleans()),
        )
        for i in range(count)
    ]

    def limits() -> Limits:
        return Limits(
            max_count=draw(st.none() | st.integers(min_value=0, max_value=6)),
            max_age=draw(st.none() | st.integers(min_value=0, max_value=60).map(lambda d: d * DAY)),
            max_bytes=draw(st.none() | st.integers(min_value=0, max_value=2000)),
        )

    return records, RetentionPolicy(node_limits=limits(), container_default=limits())


def _within(records: list[ArchiveRecord], limits: Limits) -> bool:
    return (
        (limits.max_count is None or len(records) <= limits.max_count)
        and (limits.max_bytes is None or sum(r.size_bytes for r in records) <= limits.max_bytes)
        and (limits.max_age is None or all(NOW - r.created <= limits.max_age for r in records))
    )


@given(_populations())
def test_invariants_hold_for_any_population(
    case: tuple[list[ArchiveRecord], RetentionPolicy],
) -> None:
    """What stays is within every bound, held archives are untouched, and in each scope no
    archive is kept while a newer one of the same scope is deleted for count or bytes."""
    records, policy = case
    plan = plan_retention(records, policy, NOW)
    deleted = {r.record.key for r in plan.delete}
    assert not any(r.held for r in records if r.key in deleted)
    kept = [r for r in records if not r.held and r.key not in deleted]
    assert {r.key for r in plan.keep} == {r.key for r in kept}
    for node in ("n1", "n2"):
        assert _within([r for r in kept if r.node == node], policy.node_limits)
        for container in ("app", "sidecar"):
            group = [r for r in kept if r.node == node and r.container == container]
            assert _within(group, policy.container_default)
    for removal in plan.delete:
        if removal.bound is Bound.MAX_AGE:
            continue
        same_scope = [
            r
            for r in kept
            if r.node == removal.record.node
            and (removal.scope is Scope.NODE or r.container == removal.record.container)
        ]
        assert all(
            (r.created, r.key) > (removal.record.created, removal.record.key) for r in same_scope
        )
