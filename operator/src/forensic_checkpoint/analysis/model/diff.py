"""The result of comparing two checkpoints (``commands.diff``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from forensic_checkpoint.analysis.model.base import ReportModel


@dataclass(kw_only=True)
class DiffSide(ReportModel):
    path: str
    sha256: str
    container_id: str | None = None
    checkpointed_at: str | None = None


@dataclass(kw_only=True)
class Changes(ReportModel):
    """Human-readable one-line items; JSON consumers get the same lines."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class ProcessMemoryChange(ReportModel):
    pid: int
    a_bytes: int
    b_bytes: int
    delta_bytes: int


@dataclass(kw_only=True)
class MemoryChange(ReportModel):
    a_bytes: int
    b_bytes: int
    delta_bytes: int
    processes: list[ProcessMemoryChange] = field(default_factory=list)


@dataclass(kw_only=True)
class DiffReport(ReportModel):
    a: DiffSide
    b: DiffSide
    same_container: bool
    processes: Changes
    files: Changes
    sockets: Changes
    rootfs: Changes
    #: findings by id (rule + subject), so a new reverse shell shows as added
    findings: Changes = field(default_factory=Changes)
    memory: MemoryChange
