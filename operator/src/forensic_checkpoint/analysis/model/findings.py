"""The finding and timeline models embedded in the Report (camelCase JSON, like the rest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from forensic_checkpoint.analysis.model.base import ReportModel

Severity = Literal["info", "low", "medium", "high", "critical"]

#: Ordering used for sorting and for "above info" checks.
SEVERITY_RANK: dict[str, int] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")


def as_severity(value: object) -> Severity | None:
    """``value`` if it names a severity, else None (rule files are data, so they are checked)."""
    return next((s for s in SEVERITIES if s == value), None)


@dataclass(kw_only=True)
class Evidence(ReportModel):
    """What an analyst needs to go and look: every field is optional, ``details`` holds the
    rule-specific rest (already redacted where it could hold a secret)."""

    pid: int | None = None
    #: every process involved (a chain, the holders of a socket, ...)
    pids: list[int] = field(default_factory=list)
    fd: list[int] = field(default_factory=list)
    address: str | None = None
    #: "0xstart-0xend perms name"
    mapping: str | None = None
    path: str | None = None
    #: "tcp 10.0.0.2:5811 -> 10.0.0.1:4444 ESTABLISHED"
    socket: str | None = None
    #: bytes in flight (socket/pipe queues) or bytes of the object the finding is about
    bytes: int | None = None
    sha256: str | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class Finding(ReportModel):
    #: stable across runs: "<rule>:<subject key>"
    id: str
    rule: str
    severity: Severity
    title: str
    #: what the rule is (where the condition came from: Falco, Tracee, Volatility, CRIU, ...)
    source: str
    #: MITRE ATT&CK technique ids
    attack: list[str] = field(default_factory=list)
    description: str = ""
    evidence: Evidence = field(default_factory=Evidence)


@dataclass(kw_only=True)
class TimelineEvent(ReportModel):
    #: ISO 8601 UTC with the precision the source has
    time: str
    #: Timesketch's timestamp_desc: what the time means ("File Modified", "Log Line", ...)
    timestamp_desc: str
    message: str
    #: where the time came from: container.log, rootfs-diff, ghost-file, bash-history, ...
    source: str
    #: "ns" | "us" | "s": the resolution of the source (rootfs-diff tar mtimes are seconds)
    precision: str = "s"
    pid: int | None = None
    path: str | None = None


@dataclass(kw_only=True)
class MappedBinary(ReportModel):
    """An ELF (or other executable file) mapped by some process, with its GNU build-id.

    CRIU records the build-id of every mapped file (``--file-validation=buildid``, the
    default), so the binaries can be matched against the image's own files or a package
    index; ``origin`` says where the file came from.
    """

    path: str
    #: GNU build-id as readelf prints it (hex), when CRIU recorded one
    build_id: str | None = None
    size_bytes: int | None = None
    pids: list[int] = field(default_factory=list)
    #: "image" | "rootfs-diff" (written in the container) | "memfd" | "deleted"
    origin: str = "image"
    executable_mapping: bool = False
    sha256: str | None = None


@dataclass(kw_only=True)
class HistoryEntry(ReportModel):
    """One command from a shell's in-memory history (readline HIST_ENTRY)."""

    pid: int
    command: str
    #: ISO 8601 UTC from the entry's "#<epoch>" timestamp string
    time: str | None = None
    #: address of the HIST_ENTRY in the process
    address: str | None = None


@dataclass(kw_only=True)
class GraphNode(ReportModel):
    #: "pid:14" | "pipe:205270" | "socket:29" (files.img id)
    id: str
    #: "process" | "pipe" | "socket"
    kind: str
    label: str
    #: bytes waiting in the pipe buffer or socket queues at checkpoint time
    queued_bytes: int = 0


@dataclass(kw_only=True)
class GraphEdge(ReportModel):
    #: a process node
    source: str
    #: a pipe or socket node
    target: str
    fd: int
    #: "read" | "write" | "read-write", from the fd's open flags
    access: str = "read-write"


@dataclass(kw_only=True)
class ConnectionGraph(ReportModel):
    """Processes, pipes and sockets as a graph, plus the chains that carry a process's
    standard input/output to a remote peer (directly or through a pipe)."""

    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[GraphEdge] = field(default_factory=list)
    #: "pid 14 (bash) fd 0,1,2 = tcp 10.86.0.2:58112 -> 10.86.0.1:4444 ESTABLISHED, 0 bytes queued"
    stdio_chains: list[str] = field(default_factory=list)
