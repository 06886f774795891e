"""Which checkpoint archives to delete, and why (pure: the caller passes ``now``).

Semantics, in the order :func:`plan_retention` applies them:

1. An archive under legal hold is outside retention: never deleted, and it does not count
   against any bound (like checkpoint-restore-operator's ``.keep`` pin). Its bytes are reported
   as ``held_bytes``. The hold is the project's one marker, the label or annotation
   ``forensic-checkpoint.dev/hold: "true"`` (``domain.evidence.deletion.is_held``); the agent
   copies it into :attr:`ArchiveRecord.held`.
2. Container scope first: the archives of one container identity (node, namespace, workload or
   pod, container) are bounded by the first matching :class:`ContainerRule`, else by the node
   policy's ``container_default``. Then node scope: everything left on the node is bounded by
   ``node_limits``.
3. Within a scope: ``max_age`` removes archives strictly older than the bound (an archive exactly
   ``max_age`` old stays); then ``max_count`` and ``max_bytes`` keep the newest archives and remove
   the rest, walking newest first, so an older archive is never kept while a newer one goes.
   Equal creation times are ordered by capture key (the larger key counts as newer), so every
   run decides the same.
4. With ``protect_unexported``, an archive that would go but has not been exported yet is
   *deferred* instead: kept, reported, and still counted (it really uses the disk).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from forensic_checkpoint.errors import ConfigError


@dataclass(frozen=True)
class ArchiveRecord:
    """One archive on a node, as the agent's storage lists it."""

    key: str  # capture key, unique on the node
    node: str
    namespace: str
    pod: str
    container: str
    created: datetime
    size_bytes: int
    exported: bool = False
    held: bool = False
    #: The owning workload (e.g. the Deployment), so that a bound survives pod re-creation.
    workload: str | None = None

    @property
    def container_identity(self) -> tuple[str, str, str, str]:
        return (self.node, self.namespace, self.workload or self.pod, self.container)


@dataclass(frozen=True)
class Limits:
    """Bounds of one scope; ``None`` means unbounded."""

    max_count: int | None = None
    max_age: timedelta | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_count is not None and self.max_count < 0:
            raise ConfigError(f"retention maxCount must be >= 0, got {self.max_count}")
        if self.max_bytes is not None and self.max_bytes < 0:
            raise ConfigError(f"retention maxBytes must be >= 0, got {self.max_bytes}")
        if self.max_age is not None and self.max_age < timedelta(0):
            raise ConfigError(f"retention maxAge must not be negative, got {self.max_age}")


@dataclass(frozen=True)
class ContainerRule:
    """Limits for the containers whose namespace, workload (or pod) and name match the globs."""

    limits: Limits
    namespace: str = "*"
    workload: str = "*"
    container: str = "*"

    def matches(self, record: ArchiveRecord) -> bool:
        return (
            fnmatch.fnmatchcase(record.namespace, self.namespace)
            and fnmatch.fnmatchcase(record.workload or record.pod, self.workload)
            and fnmatch.fnmatchcase(record.container, self.container)
        )


@dataclass(frozen=True)
class RetentionPolicy:
    node_limits: Limits = field(default_factory=Limits)
    container_default: Limits = field(default_factory=Limits)
    #: First match wins; containers matching none get ``container_default``.
    container_rules: tuple[ContainerRule, ...] = ()
    protect_unexported: bool = False

    def container_limits(self, record: ArchiveRecord) -> Limits:
        for rule in self.container_rules:
            if rule.matches(record):
                return rule.limits
        return self.container_default


class Bound(StrEnum):
    """The reason of a deletion, in condition-reason form (also a metrics label)."""

    MAX_AGE = "RetentionMaxAge"
    MAX_COUNT = "RetentionMaxCount"
    MAX_BYTES = "RetentionMaxBytes"


class Scope(StrEnum):
    CONTAINER = "Container"
    NODE = "Node"


@dataclass(frozen=True)
class Removal:
    record: ArchiveRecord
    bound: Bound
    scope: Scope
    detail: str  # one line for logs, events and the custody entry


@dataclass(frozen=True)
class RetentionPlan:
    delete: list[Removal]
    #: Would be deleted but are not exported yet (``protect_unexported``).
    deferred: list[Removal]
    keep: list[ArchiveRecord]
    held_bytes: int
    #: Bytes on the node once ``delete`` is done (kept + deferred + held).
    bytes_after: int

    @property
    def delete_keys(self) -> list[str]:
        return [r.record.key for r in self.delete]


def _newest_first(records: Iterable[ArchiveRecord]) -> list[ArchiveRecord]:
    return sorted(records, key=lambda r: (r.created, r.key), reverse=True)


def _over_limits(
    records: Sequence[ArchiveRecord], limits: Limits, now: datetime, what: str
) -> list[tuple[ArchiveRecord, Bound, str]]:
    """The archives of one scope that exceed ``limits``, each with the first bound it breaks."""
    out: list[tuple[ArchiveRecord, Bound, str]] = []
    survivors: list[ArchiveRecord] = []
    for record in _newest_first(records):
        age = now - record.created
        if limits.max_age is not None and age > limits.max_age:
            out.append((record, Bound.MAX_AGE, f"{what}: age {age} > maxAge {limits.max_age}"))
        else:
            survivors.append(record)
    used = 0
    for position, record in enumerate(survivors, start=1):
        used += record.size_bytes
        if limits.max_count is not None and position > limits.max_count:
            detail = f"{what}: archive {position} newest first > maxCount {limits.max_count}"
            out.append((record, Bound.MAX_COUNT, detail))
        elif limits.max_bytes is not None and used > limits.max_bytes:
            detail = f"{what}: {used} bytes with the newer ones > maxBytes {limits.max_bytes}"
            out.append((record, Bound.MAX_BYTES, detail))
            used = limits.max_bytes + 1  # everything older goes too, whatever its size
    return out


def plan_retention(
    records: Iterable[ArchiveRecord], policy: RetentionPolicy, now: datetime
) -> RetentionPlan:
    """Decide which archives to delete; see the module docstring for the rules."""
    all_records = list(records)
    held = [r for r in all_records if r.held]
    population = [r for r in all_records if not r.held]

    removals: dict[str, Removal] = {}
    _remove_over_container_limits(population, policy, now, removals)
    _remove_over_node_limits(population, policy, now, removals)

    delete, deferred = _split_deferred(population, policy, removals)
    gone = {r.record.key for r in delete}
    keep = [r for r in _newest_first(population) if r.key not in removals]
    held_bytes = sum(r.size_bytes for r in held)
    bytes_after = sum(r.size_bytes for r in all_records if r.key not in gone)
    return RetentionPlan(delete, deferred, keep, held_bytes, bytes_after)


def _split_deferred(
    population: list[ArchiveRecord], policy: RetentionPolicy, removals: dict[str, Removal]
) -> tuple[list[Removal], list[Removal]]:
    """The removals to do now and those deferred until export, both newest first."""
    delete: list[Removal] = []
    deferred: list[Removal] = []
    for record in _newest_first(population):
        removal = removals.get(record.key)
        if removal is None:
            continue
        if policy.protect_unexported and not record.exported:
            deferred.append(removal)
        else:
            delete.append(removal)
    return delete, deferred


def _remove(
    removals: dict[str, Removal], found: list[tuple[ArchiveRecord, Bound, str]], scope: Scope
) -> None:
    """Record each found archive under the first scope that found it."""
    for record, bound, detail in found:
        removals.setdefault(record.key, Removal(record, bound, scope, detail))


def _remove_over_container_limits(
    population: list[ArchiveRecord],
    policy: RetentionPolicy,
    now: datetime,
    removals: dict[str, Removal],
) -> None:
    by_container: dict[tuple[str, str, str, str], list[ArchiveRecord]] = {}
    for record in population:
        by_container.setdefault(record.container_identity, []).append(record)
    for identity, group in sorted(by_container.items()):
        limits = policy.container_limits(group[0])
        what = "container " + "/".join(identity)
        _remove(removals, _over_limits(group, limits, now, what), Scope.CONTAINER)


def _remove_over_node_limits(
    population: list[ArchiveRecord],
    policy: RetentionPolicy,
    now: datetime,
    removals: dict[str, Removal],
) -> None:
    by_node: dict[str, list[ArchiveRecord]] = {}
    for record in population:
        by_node.setdefault(record.node, []).append(record)
    for node, group in sorted(by_node.items()):
        # Deferred archives stay on disk, so they keep counting against the node's limits.
        remaining = [
            r
            for r in group
            if r.key not in removals or (policy.protect_unexported and not r.exported)
        ]
        found = _over_limits(remaining, policy.node_limits, now, f"node {node}")
        _remove(removals, [f for f in found if f[0].key not in removals], Scope.NODE)


@dataclass(frozen=True)
class LocalArchiveDecision:
    delete: bool
    reason: str


def on_checkpoint_deleted(record: ArchiveRecord) -> LocalArchiveDecision:
    """What happens to the node's archive when its ForensicCheckpoint is deleted.

    It goes once a copy is off the node (exported), or when nobody holds it; a held archive
    that exists nowhere else stays on the node (an orphan the agent keeps reporting) until the
    hold is lifted on the node or it is exported.
    """
    if record.exported:
        return LocalArchiveDecision(True, "Exported")
    if not record.held:
        return LocalArchiveDecision(True, "NotHeld")
    return LocalArchiveDecision(False, "HeldNotExported")
