"""``run_analysis``: one archive in, one Report out.

Order matters only for streaming: the archive pass collects metadata, images, the rootfs
listing and the log tail; everything after it works on memory, except the memory engine,
which may stream the pages of a large compressed archive once more.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from forensic_checkpoint.analysis.commands.redact import redact
from forensic_checkpoint.analysis.format.archive import scan_archive
from forensic_checkpoint.analysis.format.contents import (
    DEFAULT_LIMITS,
    ArchiveContents,
    ArchiveLimits,
)
from forensic_checkpoint.analysis.format.criu_images import try_decode
from forensic_checkpoint.analysis.format.members import (
    DUMP_LOG,
    LOG_MEMBERS,
    ROOTFS_DIFF,
    MemberInfo,
    is_pages,
)
from forensic_checkpoint.analysis.model.base import field_names
from forensic_checkpoint.analysis.model.report import (
    AnalyzedArchive,
    ContainerInfo,
    ContainerLog,
    DumpLog,
    DumpStats,
    MemorySummary,
    Mount,
    Pipe,
    Report,
    Rootfs,
    Socket,
)
from forensic_checkpoint.analysis.sections.files import FileTable
from forensic_checkpoint.analysis.sections.identity import build_identity, detect_engine, load_json
from forensic_checkpoint.analysis.sections.process_memory import MemoryPass, MemoryResult
from forensic_checkpoint.analysis.sections.processes import ProcessTree, build_process_tree
from forensic_checkpoint.analysis.sections.rootfs import (
    RootfsListing,
    list_rootfs,
    parse_deleted_files,
    split_mount_stubs,
)
from forensic_checkpoint.analysis.sections.sockets import (
    build_pipes,
    build_sockets,
    label_socket_fds,
)

if TYPE_CHECKING:
    from forensic_checkpoint.analysis import AnalyzerOptions
    from forensic_checkpoint.analysis.findings.run import FindingsPass

#: the log is kept as its last bytes; whole logs can be gigabytes
LOG_TAIL_BYTES = 64 << 10

T = TypeVar("T")


def _section(what: str, warnings: list[str], build: Callable[[], T], fallback: T) -> T:
    """Build one part of the report; a hostile image that trips a builder costs that part
    (with a warning), never the whole report and never a traceback."""
    from forensic_checkpoint.errors import ConfigError

    try:
        return build()
    except ConfigError:
        raise  # the user's own input (a bad regex) is an error, not a damaged archive
    except Exception as exc:  # any decoder failure on untrusted bytes
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        warnings.append(f"{what} could not be read: {type(exc).__name__}: {text}".rstrip(": "))
        return fallback


#: lines of dump.log kept as problems / tail
DUMP_LOG_PROBLEMS = 50
DUMP_LOG_TAIL_LINES = 20


class _Collected:
    def __init__(self) -> None:
        self.rootfs: RootfsListing | None = None
        self.log: ContainerLog | None = None
        self.dump_log: DumpLog | None = None


def summarize_dump_log(member: MemberInfo, stream: IO[bytes]) -> DumpLog:
    """Stream dump.log line by line: version, Error/Warn lines, success, last lines."""
    summary = DumpLog(size_bytes=member.size)
    tail: list[str] = []
    # readline with a bound: a hostile log may be one endless line
    while raw := stream.readline(64 << 10):
        line = raw[:1000].decode("utf-8", "replace").rstrip("\n")
        if summary.criu_version is None and ") Version: " in line:
            summary.criu_version = line.split(") Version: ", 1)[1].strip()
        if (") Error " in line or ") Warn " in line) and len(summary.problems) < DUMP_LOG_PROBLEMS:
            summary.problems.append(line)
        tail = [*tail[-(DUMP_LOG_TAIL_LINES - 1) :], line]
    summary.tail = "\n".join(tail)
    summary.succeeded = bool(tail) and tail[-1].endswith("Dumping finished successfully")
    return summary


def _visitors(collected: _Collected, limits: ArchiveLimits) -> dict[str, Any]:
    def rootfs(_member: MemberInfo, stream: IO[bytes]) -> None:
        collected.rootfs = list_rootfs(stream, limits)

    def log(member: MemberInfo, stream: IO[bytes]) -> None:
        if collected.log is not None:
            return
        tail = b""
        while chunk := stream.read(1 << 20):
            tail = (tail + chunk)[-LOG_TAIL_BYTES:]
        collected.log = ContainerLog(
            member=member.name,
            size_bytes=member.size,
            content=tail.decode("utf-8", "replace"),
            truncated=member.size > len(tail),
        )

    def dump_log(member: MemberInfo, stream: IO[bytes]) -> None:
        collected.dump_log = summarize_dump_log(member, stream)

    visitors: dict[str, Any] = {ROOTFS_DIFF: rootfs, DUMP_LOG: dump_log}
    visitors.update(dict.fromkeys(LOG_MEMBERS, log))
    return visitors


def run_analysis(
    path: Path, options: AnalyzerOptions, limits: ArchiveLimits = DEFAULT_LIMITS
) -> Report:
    collected = _Collected()
    early: list[str] = []  # warnings from before the archive pass
    findings = (
        _section("findings", early, lambda: _findings_pass(options), None)
        if options.findings
        else None
    )
    # Made before the archive pass: a large compressed archive's pages are searched, and the
    # findings scan them, while it streams by (one read of any archive).
    memory_pass = MemoryPass(
        searches=options.searches,
        regexes=options.regexes,
        read_args=options.read_process_memory,
        context=options.context,
        max_matches=options.max_matches,
        observe=findings.observers if findings is not None else None,
    )
    # A plain tar is hashed in a thread while the images are decoded and memory searched.
    contents = scan_archive(
        path,
        limits=limits,
        visitors=_visitors(collected, limits),
        hash_later=True,
        hash_file=options.known_digest is None,
        pages_visitor=memory_pass.visit,
        on_progress=options.on_progress,
    )
    warnings = [*early, *contents.warnings]
    data = contents.data
    names = {m.name for m in contents.members}

    config = _as_dict(load_json(data.get("config.dump"), "config.dump", warnings))
    spec = _as_dict(load_json(data.get("spec.dump"), "spec.dump", warnings))
    status_dump = _as_dict(load_json(data.get("status.dump"), "status.dump", warnings))
    status = _as_dict(load_json(data.get("status"), "status", warnings))
    network_status = load_json(data.get("network.status"), "network.status", warnings)
    bind_mounts = load_json(data.get("bind.mounts"), "bind.mounts", warnings)
    engine = detect_engine(spec, config, names)

    table = _section("files.img", warnings, lambda: FileTable.load(data, warnings), FileTable())
    tree = _section(
        "the process tree",
        warnings,
        lambda: build_process_tree(data, table, warnings),
        ProcessTree(),
    )
    checkpoint_dir = contents.member("checkpoint") or contents.member("checkpoint/")
    container = _section(
        "container identity",
        warnings,
        lambda: build_identity(
            config=config,
            spec=spec,
            status_dump=status_dump,
            network_status=network_status,
            status=status,
            hostname=tree.hostname,
            domainname=tree.domainname,
            checkpoint_mtime=checkpoint_dir.mtime if checkpoint_dir else None,
        ),
        ContainerInfo(),
    )
    memory = _section(
        "process memory",
        warnings,
        lambda: memory_pass.run(contents, tree, table, warnings),
        MemoryResult(),
    )
    no_sockets: list[Socket] = []
    no_pipes: list[Pipe] = []
    no_mounts: list[Mount] = []
    if (problem := contents.wait_hash()) is not None:
        warnings.append(problem)
    if options.known_digest is not None:
        known = options.known_digest
        contents.sha256, contents.size_bytes = known() if callable(known) else known
    mounts = tree.mounts + _section(
        "spec.dump mounts", warnings, lambda: _spec_mounts(spec), no_mounts
    )
    report = Report(
        archive=_archive_info(contents, engine),
        container=container,
        processes=tree.processes,
        sockets=_section(
            "sockets",
            warnings,
            lambda: build_sockets(table, data, tree.fd_map, warnings),
            no_sockets,
        ),
        pipes=_section(
            "pipes", warnings, lambda: build_pipes(table, data, tree.fd_map, warnings), no_pipes
        ),
        namespaces=tree.namespaces,
        mounts=mounts,
        rootfs=_rootfs(collected.rootfs, data, names, warnings, mounts),
        log=collected.log,
        dump_log=collected.dump_log,
        bind_mounts=bind_mounts,
        network_status=network_status,
        memory=MemorySummary(
            page_size=memory.page_size,
            dumped_bytes=sum(m.size for m in contents.members if is_pages(m.name)),
            searches=memory.searches,
        ),
        shared_memory=memory.shared,
        dump_stats=_section(
            "stats-dump", warnings, lambda: _dump_stats(data.get("stats-dump"), warnings), None
        ),
        warnings=warnings,
    )
    label_socket_fds(report.processes, report.sockets)
    if findings is not None:
        _section("findings", warnings, lambda: findings.finish(contents, report), None)
    return report if options.reveal else redact(report, copy=False)


def _findings_pass(options: AnalyzerOptions) -> FindingsPass:
    from forensic_checkpoint.analysis.findings.run import FindingsPass

    return FindingsPass(options.yara, memory_secrets=options.memory_secrets)


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _archive_info(contents: ArchiveContents, engine: str) -> AnalyzedArchive:
    files = [m for m in contents.members if m.kind == "file"]
    rootfs = contents.member(ROOTFS_DIFF)
    return AnalyzedArchive(
        path=str(contents.path),
        sha256=contents.sha256,
        size_bytes=contents.size_bytes,
        engine=engine,
        compression=contents.compression,
        member_count=len(contents.members),
        checkpoint_size_bytes=sum(m.size for m in files if m.name.startswith("checkpoint/")),
        memory_pages_size_bytes=sum(m.size for m in files if is_pages(m.name)),
        rootfs_diff_size_bytes=rootfs.size if rootfs else 0,
        members=[m.name for m in contents.members],
    )


def _spec_mounts(spec: dict[str, Any]) -> list[Mount]:
    mounts = []
    for m in spec.get("mounts") or []:
        if isinstance(m, dict) and isinstance(m.get("destination"), str):
            options = m.get("options")
            mounts.append(
                Mount(
                    mountpoint=m["destination"],
                    fstype=m.get("type") if isinstance(m.get("type"), str) else None,
                    source=m.get("source") if isinstance(m.get("source"), str) else None,
                    options=",".join(str(o) for o in options)
                    if isinstance(options, list)
                    else None,
                    origin="spec",
                )
            )
    return mounts


def _rootfs(
    listing: RootfsListing | None,
    data: dict[str, bytes],
    names: set[str],
    warnings: list[str],
    mounts: list[Mount],
) -> Rootfs:
    rootfs = Rootfs(present=ROOTFS_DIFF in names)
    deleted = parse_deleted_files(data.get("deleted.files"), warnings)
    if deleted:
        rootfs.deleted, rootfs.deleted_source = deleted, "deleted.files"
    if listing is not None:
        warnings.extend(listing.warnings)
        rootfs.format = listing.format
        rootfs.changed, rootfs.mount_stubs = split_mount_stubs(
            listing.entries, (m.mountpoint for m in mounts)
        )
        rootfs.opaque_dirs = listing.opaque_dirs
        if listing.whiteouts:
            rootfs.deleted = sorted({*rootfs.deleted, *listing.whiteouts})
            rootfs.deleted_source = (
                "whiteouts" if rootfs.deleted_source is None else "deleted.files+whiteouts"
            )
    return rootfs


def _dump_stats(blob: bytes | None, warnings: list[str]) -> DumpStats | None:
    image = try_decode("STATS", blob, "stats-dump", warnings)
    if image is None or not image.entries or not image.entries[0].HasField("dump"):
        return None
    dump = image.entries[0].dump
    values = {
        f.name: int(getattr(dump, f.name))
        for f in dump.DESCRIPTOR.fields
        if dump.HasField(f.name) and f.name in field_names(DumpStats)
    }
    return DumpStats(**values)
