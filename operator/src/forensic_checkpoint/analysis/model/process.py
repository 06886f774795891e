"""A process of the report: identity, threads, credentials, seccomp, open files (with the
content of deleted ones), memory maps and environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forensic_checkpoint.analysis.model.base import ReportModel

if TYPE_CHECKING:
    pass


@dataclass(kw_only=True)
class EnvVar(ReportModel):
    name: str
    value: str


@dataclass(kw_only=True)
class Thread(ReportModel):
    tid: int
    comm: str | None = None
    state: str | None = None


@dataclass(kw_only=True)
class Credentials(ReportModel):
    uid: int | None = None
    euid: int | None = None
    suid: int | None = None
    fsuid: int | None = None
    gid: int | None = None
    egid: int | None = None
    sgid: int | None = None
    fsgid: int | None = None
    groups: list[int] = field(default_factory=list)
    #: Capability sets as lists of names (CAP_NET_BIND_SERVICE, ...).
    cap_effective: list[str] = field(default_factory=list)
    cap_permitted: list[str] = field(default_factory=list)
    cap_inheritable: list[str] = field(default_factory=list)
    cap_bounding: list[str] = field(default_factory=list)
    cap_ambient: list[str] = field(default_factory=list)
    no_new_privs: bool | None = None


@dataclass(kw_only=True)
class Seccomp(ReportModel):
    #: "disabled" | "strict" | "filter"
    mode: str
    filters: int = 0
    filter_instructions: int = 0


@dataclass(kw_only=True)
class GhostFile(ReportModel):
    """Content of a deleted-but-open file, which CRIU saves in ghost-file-N.img."""

    image: str
    size_bytes: int
    mode: str | None = None
    #: Text (UTF-8, replacement characters) of the first bytes; full bytes via show-file.
    preview: str = ""
    truncated: bool = False


@dataclass(kw_only=True)
class OpenFile(ReportModel):
    fd: int | str  # int, or "cwd" / "root" / "exe"
    #: REG | PIPE | FIFO | INETSK | UNIXSK | PACKETSK | NETLINKSK | EVENTFD | EVENTPOLL | ...
    type: str
    path: str
    flags: str | None = None
    position: int | None = None
    mode: str | None = None
    size_bytes: int | None = None
    deleted: bool = False
    ghost: GhostFile | None = None
    #: files.img id, linking the fd to sockets[].id / pipes[].id
    file_id: int | None = None
    #: A pseudo-terminal (type TTY): "<devpts device>:<index>", the same for both ends of one
    #: pty, and whether this fd is its master (/dev/ptmx) or its slave (/dev/pts/<index>).
    pty: str | None = None
    pty_master: bool | None = None


@dataclass(kw_only=True)
class MemoryMap(ReportModel):
    start: str
    end: str
    size_bytes: int
    #: "rwxp" style, as in /proc/PID/maps
    perms: str
    #: file path, [stack], [heap], [vdso], [anon], shmem, memfd:NAME ...
    name: str
    offset: int = 0
    shared: bool = False
    #: bytes of this area that are in the dump (resident at checkpoint time)
    rss_bytes: int = 0


@dataclass(kw_only=True)
class Process(ReportModel):
    pid: int
    ppid: int
    pgid: int | None = None
    sid: int | None = None
    comm: str
    exe: str | None = None
    #: argv read from memory (mm_arg_start..mm_arg_end); empty if unreadable.
    cmdline: list[str] = field(default_factory=list)
    #: "running" | "sleeping" | "stopped" | "zombie" | "dead" | ...
    state: str
    exit_code: int | None = None
    threads: list[Thread] = field(default_factory=list)
    env: list[EnvVar] = field(default_factory=list)
    cwd: str | None = None
    root: str | None = None
    credentials: Credentials | None = None
    seccomp: Seccomp | None = None
    open_files: list[OpenFile] = field(default_factory=list)
    maps: list[MemoryMap] = field(default_factory=list)
    #: bytes of private memory in the dump (pagemap PE_PRESENT pages)
    rss_bytes: int = 0
    #: checkpointctl memparse: all pagemap pages; shared = size of MAP_SHARED areas
    memory_size_bytes: int = 0
    shared_memory_size_bytes: int = 0
    #: namespace type -> id (ids-PID.img)
    namespaces: dict[str, int] = field(default_factory=dict)
