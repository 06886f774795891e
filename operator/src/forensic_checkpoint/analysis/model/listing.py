"""One row per checkpoint archive of a directory (``commands.listing``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from forensic_checkpoint.analysis.model.base import ReportModel


@dataclass(kw_only=True)
class ListedCheckpoint(ReportModel):
    path: str
    size_bytes: int = 0
    engine: str | None = None
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None
    checkpointed_at: str | None = None
    error: str | None = None


@dataclass(kw_only=True)
class CheckpointList(ReportModel):
    checkpoints: list[ListedCheckpoint] = field(default_factory=list)
