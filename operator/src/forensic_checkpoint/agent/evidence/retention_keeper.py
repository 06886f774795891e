"""Applies :func:`forensic_checkpoint.domain.evidence.retention.plan_retention` to the node's
archives.

The policy comes from the chart's ``retention`` values (:func:`policy_from_values`). A pass runs
every ``--retention-interval`` seconds and after each finished capture. Only finished jobs with
an archive take part. A job whose export is running is never touched in that pass. A deleted
archive takes its report with it; the job record stays, with ``archiveDeletedAt``/``Reason`` and a
``Deleted`` custody fact, until the operator deletes the capture.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from forensic_checkpoint.agent import paths
from forensic_checkpoint.agent.background import BackgroundPass
from forensic_checkpoint.agent.evidence import custody_facts
from forensic_checkpoint.agent.evidence.export_worker import ARCHIVE_GONE
from forensic_checkpoint.agent.jobs import JobRecord, JobStore, utcnow
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.api.agent import ExportPhase
from forensic_checkpoint.domain.evidence.retention import (
    ArchiveRecord,
    ContainerRule,
    Limits,
    RetentionPlan,
    RetentionPolicy,
    plan_retention,
)
from forensic_checkpoint.errors import CaptureError, ConfigError

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_BYTES = re.compile(r"^(\d+)(|k|Ki|M|Mi|G|Gi|T|Ti)$")
_BYTE_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_duration(value: Any) -> timedelta:
    """Seconds as a number, or ``30s``, ``15m``, ``24h``, ``7d``, ``2w``."""
    match = _DURATION.match(str(value).strip())
    if match is None:
        raise ConfigError(f"retention maxAge {value!r}: use seconds or 30s/15m/24h/7d/2w")
    return timedelta(seconds=int(match[1]) * _DURATION_UNITS[match[2]])


def parse_bytes(value: Any) -> int:
    """Bytes as a number, or with a Kubernetes quantity suffix (``500Mi``, ``20Gi``, ``1G``)."""
    match = _BYTES.match(str(value).strip())
    if match is None:
        raise ConfigError(f"retention maxBytes {value!r}: use bytes or e.g. 500Mi, 20Gi")
    return int(match[1]) * _BYTE_UNITS[match[2]]


def _limits(raw: Any, where: str) -> Limits:
    if raw is None:
        return Limits()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"retention {where} is not a mapping")
    count = raw.get("maxCount")
    age = raw.get("maxAge")
    size = raw.get("maxBytes")
    return Limits(
        max_count=int(count) if count is not None else None,
        max_age=parse_duration(age) if age is not None else None,
        max_bytes=parse_bytes(size) if size is not None else None,
    )


def policy_from_values(values: Mapping[str, Any] | None) -> RetentionPolicy | None:
    """The chart's ``retention`` section; ``None`` (or ``enabled: false``): no retention."""
    if values is None or not values.get("enabled", True):
        return None
    rules = []
    for position, rule in enumerate(values.get("containerRules") or []):
        if not isinstance(rule, Mapping):
            raise ConfigError(f"retention containerRules[{position}] is not a mapping")
        rules.append(
            ContainerRule(
                limits=_limits(rule, f"containerRules[{position}]"),
                namespace=str(rule.get("namespace", "*")),
                workload=str(rule.get("workload", "*")),
                container=str(rule.get("container", "*")),
            )
        )
    try:
        return RetentionPolicy(
            node_limits=_limits(values.get("node"), "node"),
            container_default=_limits(values.get("container"), "container"),
            container_rules=tuple(rules),
            protect_unexported=bool(values.get("protectUnexported", True)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"retention values are invalid: {exc}") from exc


def _candidate(record: JobRecord, node: str) -> ArchiveRecord | None:
    status = record.status
    if not status.state.terminal or status.archive is None or status.archive_deleted_at:
        return None
    export = status.export
    return ArchiveRecord(
        key=status.key,
        node=node,
        namespace=record.request.pod_namespace,
        pod=record.request.pod_name,
        container=record.request.container,
        created=status.archive.captured_at,
        size_bytes=status.archive.size_bytes,
        exported=export is not None and export.phase is ExportPhase.EXPORTED,
        held=status.held,
    )


class RetentionKeeper(BackgroundPass):
    name = "retention"

    def __init__(
        self,
        *,
        store: JobStore,
        policy: RetentionPolicy,
        node_name: str,
        checkpoint_dir: Path,
        metrics: AgentMetrics,
        interval: float = 300.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.policy = policy
        self.node_name = node_name
        self.checkpoint_dir = checkpoint_dir
        self.metrics = metrics
        self.interval = interval
        self._clock = clock
        self._pass = threading.Lock()
        super().__init__()

    def run_pass(self) -> None:
        self.run_once()

    def wait_seconds(self) -> float | None:
        return self.interval if self.interval > 0 else None

    def run_once(self, now: datetime | None = None) -> RetentionPlan:
        """Plan over the archives on disk and delete what the plan says; returns the plan."""
        with self._pass:
            now = now or self._clock()
            candidates = [
                c for r in self.store.all() if (c := _candidate(r, self.node_name)) is not None
            ]
            plan = plan_retention(candidates, self.policy, now)
            deleted_bytes = 0
            for removal in plan.delete:
                if self._delete(removal.record.key, removal.bound.value, removal.detail, now):
                    deleted_bytes += removal.record.size_bytes
                    self.metrics.retention_deletions.labels(reason=removal.bound.value).inc()
            self.metrics.retention_bytes.set(plan.bytes_after)
            self.metrics.retention_held_bytes.set(plan.held_bytes)
            self.metrics.retention_deferred.set(len(plan.deferred))
            for removal in plan.deferred:
                log.info(
                    "retention keeps unexported %s for now: %s",
                    removal.record.key,
                    removal.detail,
                )
            return plan

    def _delete(self, key: str, reason: str, detail: str, now: datetime) -> bool:
        """Delete one archive and its report, unless its state changed since the plan."""
        with self.store.locked():
            record = self.store.get(key)
            if record is None or _candidate(record, self.node_name) is None or record.status.held:
                return False
            export = record.status.export
            if export is not None and export.phase is ExportPhase.EXPORTING:
                return False  # never pull an archive from under a running upload
            exported = export is not None and export.phase is ExportPhase.EXPORTED
            if self.policy.protect_unexported and not exported:
                return False
            assert record.status.archive is not None  # noqa: S101 - _candidate checked it
            try:
                archive: Path | None = paths.resolve_archive(
                    record.status.archive.path, self.checkpoint_dir
                )
            except CaptureError:
                archive = None  # already gone, or no longer ours to touch
            if archive is not None:
                archive.unlink(missing_ok=True)
            if record.report_path is not None:
                Path(record.report_path).unlink(missing_ok=True)
            record.status.archive_deleted_at = now
            record.status.archive_deleted_reason = reason
            if export is not None and export.phase.active:
                export.phase = ExportPhase.FAILED
                export.reason = ARCHIVE_GONE
                export.message = f"retention deleted the archive before its export: {detail}"
            custody_facts.add(
                record, custody_facts.deleted(record, self.node_name, now, reason, detail)
            )
            self.store.save(record)
        log.info("retention deleted %s (%s): %s", key, reason, detail)
        return True
