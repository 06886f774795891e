"""The analysis report: one model that every renderer, the agent and the operator share.

JSON is camelCase (``report.to_json_dict()``, see ``base.ReportModel``); Python code uses the
snake_case attribute names. Addresses are hex strings (``"0x7ffd..."``) because that is how
crit, /proc and every analyst write them, and because 64-bit values do not survive JavaScript
numbers. Fields the archive cannot tell are ``None`` rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from forensic_checkpoint.analysis.model.base import ReportModel
from forensic_checkpoint.analysis.model.findings import (
    ConnectionGraph,
    Finding,
    HistoryEntry,
    MappedBinary,
    TimelineEvent,
)
from forensic_checkpoint.analysis.model.process import EnvVar, Process

if TYPE_CHECKING:
    from pydantic import TypeAdapter

#: Bumped when a field is renamed or removed (adding fields does not bump it).
SCHEMA_VERSION = "1"

#: What a masked secret looks like in every output.
REDACTED = "<redacted>"


# --- archive and container identity ---------------------------------------------------------


@dataclass(kw_only=True)
class AnalyzedArchive(ReportModel):
    path: str
    sha256: str
    size_bytes: int
    #: "cri-o" | "podman" | "containerd" | "unknown"
    engine: str
    #: "none" | "gzip" | "zstd"
    compression: str
    member_count: int = 0
    #: checkpointctl's sizes: regular files under checkpoint/, pages-*.img, rootfs-diff.tar.
    checkpoint_size_bytes: int = 0
    memory_pages_size_bytes: int = 0
    rootfs_diff_size_bytes: int = 0
    members: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class ContainerInfo(ReportModel):
    id: str | None = None
    #: the Kubernetes container name where known, else the engine's container name
    name: str | None = None
    #: the engine's own name (config.dump): k8s_<ctr>_<pod>_<ns>_<uid>_<n> on CRI-O
    config_name: str | None = None
    pod: str | None = None
    pod_id: str | None = None
    pod_uid: str | None = None
    namespace: str | None = None
    image: str | None = None
    image_id: str | None = None
    runtime: str | None = None
    #: UTS nodename from utsns-*.img (what `hostname` printed inside the container).
    hostname: str | None = None
    domainname: str | None = None
    created_at: str | None = None
    checkpointed_at: str | None = None
    #: Pod/container IP where the archive records one (network.status, CRI-O annotation).
    ip: str | None = None
    #: host PID of the container's init process (containerd's status file)
    host_pid: int | None = None
    #: where the engine kept the container log on the node (status.dump log_path, CRI-O)
    log_path: str | None = None
    args: list[str] = field(default_factory=list)
    cwd: str | None = None
    #: OCI spec env as NAME=VALUE (values masked unless revealed).
    spec_env: list[EnvVar] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


# --- sockets, pipes, queues -----------------------------------------------------------------


@dataclass(kw_only=True)
class QueueData(ReportModel):
    """Bytes waiting in a kernel queue when the dump was taken."""

    size_bytes: int
    #: UTF-8 text with replacement characters; hex for binary data is in ``hex``.
    text: str
    hex: str | None = None
    truncated: bool = False


@dataclass(kw_only=True)
class Holder(ReportModel):
    pid: int
    fd: int


@dataclass(kw_only=True)
class Socket(ReportModel):
    id: int
    inode: int | None = None
    #: pid of the first holder (sockets shared by several fds list all in heldBy)
    pid: int | None = None
    held_by: list[Holder] = field(default_factory=list)
    #: "unix" | "inet" | "inet6" | "packet" | "netlink"
    family: str
    #: "stream" | "dgram" | "seqpacket" | "raw" | ...
    type: str
    #: "tcp" | "udp" | ... for inet; protocol number name otherwise
    protocol: str | None = None
    state: str | None = None
    local_address: str | None = None
    local_port: int | None = None
    remote_address: str | None = None
    remote_port: int | None = None
    #: unix sockets: peer socket inode, and the peer's holders
    peer_inode: int | None = None
    receive_queue: QueueData | None = None
    send_queue: QueueData | None = None
    #: SO_SNDBUF / SO_RCVBUF option sizes (not queued data)
    send_buffer_bytes: int | None = None
    receive_buffer_bytes: int | None = None


@dataclass(kw_only=True)
class Pipe(ReportModel):
    id: int
    type: Literal["pipe", "fifo"] = "pipe"
    path: str | None = None
    held_by: list[Holder] = field(default_factory=list)
    buffered: QueueData | None = None


# --- namespaces, mounts -----------------------------------------------------------------------


@dataclass(kw_only=True)
class Namespace(ReportModel):
    type: str
    id: int
    #: extra facts: external key, UTS names, ...
    details: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class Mount(ReportModel):
    mountpoint: str
    fstype: str | None = None
    source: str | None = None
    root: str | None = None
    options: str | None = None
    external: str | None = None
    #: "criu" (mountpoints-*.img) | "spec" (OCI spec.dump mounts)
    origin: str = "criu"


# --- rootfs diff --------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RootfsEntry(ReportModel):
    path: str
    #: "file" | "dir" | "symlink" | "hardlink" | "whiteout" | "other"
    type: str
    size_bytes: int = 0
    mode: str
    link_target: str | None = None
    mtime: str | None = None
    #: sha256 of a regular file's content
    sha256: str | None = None


@dataclass(kw_only=True)
class Rootfs(ReportModel):
    present: bool = False
    #: "tar" | "tar+gzip" | None
    format: str | None = None
    changed: list[RootfsEntry] = field(default_factory=list)
    #: empty files and directories the runtime made as mount destinations (containerd's
    #: /etc/hosts, volume directories): in rootfs-diff.tar, but not changes (rootfs.py)
    mount_stubs: list[RootfsEntry] = field(default_factory=list)
    #: absolute paths deleted from the image (deleted.files or .wh. whiteouts)
    deleted: list[str] = field(default_factory=list)
    #: "deleted.files" | "whiteouts" | None
    deleted_source: str | None = None
    #: directories marked opaque (.wh..wh..opq)
    opaque_dirs: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class DumpLog(ReportModel):
    """CRIU's dump.log (CRI-O and containerd archives), summarised."""

    size_bytes: int
    criu_version: str | None = None
    #: "Dumping finished successfully" is the last line
    succeeded: bool = False
    #: the first "Error" and "Warn" lines, as CRIU wrote them
    problems: list[str] = field(default_factory=list)
    #: the last lines of the log
    tail: str = ""


@dataclass(kw_only=True)
class ContainerLog(ReportModel):
    member: str
    size_bytes: int
    #: the last lines of the log (text); ``truncated`` says whether earlier lines were cut
    content: str
    truncated: bool = False


# --- memory -----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class SearchMatch(ReportModel):
    pid: int
    address: str
    #: the VMA it falls in: "0xstart-0xend perms name"
    mapping: str | None = None
    #: printable rendering of the bytes around the match (non-printables as '.')
    context: str = ""
    #: the matched bytes as text (masked for regex searches unless revealed)
    match: str = ""
    #: a match in a shared memory object: every process that maps it or holds it open (``pid``
    #: and ``address`` are one of them; the others read the same bytes)
    shared_with: list[int] = field(default_factory=list)

    def where(self) -> str:
        """The mapping, and who else could read the match there (a shared object)."""
        mapping = self.mapping or "?"
        others = [pid for pid in self.shared_with if pid != self.pid]
        if not others:
            return mapping
        return f"{mapping}; also mapped by pid {', '.join(map(str, others))}"


@dataclass(kw_only=True)
class MemorySearch(ReportModel):
    pattern: str
    kind: Literal["literal", "regex"]
    matches: list[SearchMatch] = field(default_factory=list)
    #: all matches found; ``matches`` holds the first ones (``truncated`` when cut)
    total_matches: int = 0
    truncated: bool = False


@dataclass(kw_only=True)
class MemorySummary(ReportModel):
    page_size: int = 4096
    #: bytes of all pages-*.img
    dumped_bytes: int = 0
    searches: list[MemorySearch] = field(default_factory=list)


@dataclass(kw_only=True)
class SharedMemoryObject(ReportModel):
    """A shared memory object whose pages CRIU dumped once for all processes
    (pagemap-shmem-<shmid>.img): a memfd, or MAP_SHARED anonymous memory."""

    shmid: int
    #: "memfd" | "anon-shared" | "sysv-shm"
    kind: str
    name: str | None = None
    #: the object's size (memfd inode size), when known
    size_bytes: int | None = None
    dumped_bytes: int = 0
    #: sha256 of the memfd content (size_bytes bytes from offset 0) when fully dumped
    sha256: str | None = None
    #: processes that map it ("pid 0xstart-0xend") or hold it open ("pid fd N")
    used_by: list[str] = field(default_factory=list)
    #: every process that maps it or holds it open: who can read what it holds
    pids: list[int] = field(default_factory=list)


@dataclass(kw_only=True)
class DumpStats(ReportModel):
    """CRIU's dump statistics (stats-dump), times in microseconds."""

    freezing_time: int | None = None
    frozen_time: int | None = None
    memdump_time: int | None = None
    memwrite_time: int | None = None
    pages_scanned: int | None = None
    pages_skipped_parent: int | None = None
    pages_written: int | None = None
    irmap_resolve: int | None = None
    pages_lazy: int | None = None
    page_pipes: int | None = None
    page_pipe_bufs: int | None = None
    shpages_scanned: int | None = None
    shpages_skipped_parent: int | None = None
    shpages_written: int | None = None


# --- the report -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Report(ReportModel):
    schema_version: str = SCHEMA_VERSION
    #: True when secrets were masked (the default); False after --reveal.
    redacted: bool = False
    archive: AnalyzedArchive
    container: ContainerInfo = field(default_factory=ContainerInfo)
    processes: list[Process] = field(default_factory=list)
    sockets: list[Socket] = field(default_factory=list)
    pipes: list[Pipe] = field(default_factory=list)
    namespaces: list[Namespace] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    rootfs: Rootfs = field(default_factory=Rootfs)
    log: ContainerLog | None = None
    dump_log: DumpLog | None = None
    #: bind.mounts (CRI-O) and network.status (podman) as parsed JSON
    bind_mounts: Any = None
    network_status: Any = None
    memory: MemorySummary = field(default_factory=MemorySummary)
    shared_memory: list[SharedMemoryObject] = field(default_factory=list)
    dump_stats: DumpStats | None = None
    #: what is wrong in the checkpoint (analysis/findings), most severe first
    findings: list[Finding] = field(default_factory=list)
    #: every time the archive holds, oldest first (analysis/sections/timeline.py)
    timeline: list[TimelineEvent] = field(default_factory=list)
    #: commands recovered from shells' in-memory history (findings/history.py)
    shell_history: list[HistoryEntry] = field(default_factory=list)
    #: mapped ELFs with build-ids and origin (findings/provenance.py)
    binaries: list[MappedBinary] = field(default_factory=list)
    #: processes, pipes and sockets as a graph, with stdio chains (findings/graph.py)
    connections: ConnectionGraph = field(default_factory=ConnectionGraph)
    warnings: list[str] = field(default_factory=list)

    def process(self, pid: int) -> Process | None:
        return next((p for p in self.processes if p.pid == pid), None)


@cache
def _report_adapter() -> TypeAdapter[Report]:
    from pydantic import TypeAdapter

    return TypeAdapter(Report)


def parse_report(text: str | bytes) -> Report:
    """A report from its JSON (an agent's answer): validated by pydantic, which is imported
    only here, so the analyzer itself never pays for it. Raises ``ValueError``."""
    return _report_adapter().validate_json(text)
