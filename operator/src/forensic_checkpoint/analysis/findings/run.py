"""The findings step of an analysis: called by the analyzer before the report is redacted."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from forensic_checkpoint.analysis.findings.credentials import (
    Hit,
    MemoryCredentials,
    find_credentials,
    mask_secrets,
)
from forensic_checkpoint.analysis.findings.engine import (
    RuleSet,
    default_rules,
    evaluate,
    sort_findings,
    subjects,
)
from forensic_checkpoint.analysis.findings.facts import Inputs
from forensic_checkpoint.analysis.findings.graph import build_graph
from forensic_checkpoint.analysis.findings.history import recover_history
from forensic_checkpoint.analysis.findings.provenance import mapped_binaries
from forensic_checkpoint.analysis.findings.sources import (
    FileContents,
    Piece,
    RunPieces,
    file_members,
    iter_runs,
    read_files,
    visit_members,
)
from forensic_checkpoint.analysis.findings.yara_scan import (
    YaraScanner,
    compile_rules,
    hits_to_findings,
)
from forensic_checkpoint.analysis.format.contents import ArchiveContents
from forensic_checkpoint.analysis.format.criu_images import try_decode
from forensic_checkpoint.analysis.format.streams import Readable
from forensic_checkpoint.analysis.memory import (
    PageIndex,
    Pagemap,
    ProcessMemory,
)
from forensic_checkpoint.analysis.model.findings import Finding, HistoryEntry
from forensic_checkpoint.analysis.model.process import Process
from forensic_checkpoint.analysis.model.report import QueueData, Report, SharedMemoryObject
from forensic_checkpoint.analysis.sections.files import FileTable
from forensic_checkpoint.analysis.sections.memory_tasks import (
    PagesObserver,
    indexed_pages,
)
from forensic_checkpoint.analysis.sections.timeline import build_timeline


def _spec(contents: ArchiveContents) -> dict[str, Any]:
    try:
        spec = json.loads(contents.data.get("spec.dump") or b"{}")
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}


def find_all(
    report: Report,
    images: dict[str, bytes],
    rootfs_files: dict[str, bytes],
    spec: dict[str, Any],
    *,
    memory_secrets: Sequence[Hit] = (),
    ruleset: RuleSet | None = None,
) -> list[Finding]:
    """Rules + credential inventory over one (unredacted) report; pure, for tests too."""
    rules = ruleset or default_rules()
    inputs = Inputs(report=report, images=images, rootfs_files=rootfs_files, spec=spec)
    found = evaluate(rules, subjects(inputs, rules.lists))
    found += find_credentials(report, rootfs_files, rules.credentials, memory_secrets)
    return sort_findings(found)


#: shells whose heap is searched for readline history (HIST_ENTRY layout)
HISTORY_SHELLS = frozenset({"bash"})
#: heaps larger than this are not searched for history
MAX_HEAP = 64 << 20


@dataclass
class PagesTask:
    index: PageIndex
    kind: str
    target: str
    pid: int | None
    #: [start, end) of memory to keep while the pages stream by (a shell's heap)
    keep: tuple[int, int] | None = None
    #: a shared memory object's: every process that maps it or holds it open
    readers: tuple[int, ...] = ()
    #: the kept bytes as (vaddr, data) and as (pages-file offset, data)
    segments: list[tuple[int, bytes]] = field(default_factory=list)
    kept: list[tuple[int, bytes]] = field(default_factory=list)

    def take(self, vaddr: int, file_offset: int, data: bytes) -> None:
        if self.keep is None:
            return
        lo, hi = max(vaddr, self.keep[0]), min(vaddr + len(data), self.keep[1])
        if lo < hi:
            piece = data[lo - vaddr : hi - vaddr]
            self.segments.append((lo, piece))
            self.kept.append((file_offset + lo - vaddr, piece))


def _heap(contents: ArchiveContents, pid: int) -> tuple[int, int] | None:
    image = try_decode("MM", contents.data.get(f"checkpoint/mm-{pid}.img"), "mm", [])
    if image is None or not image.entries:
        return None
    mm = image.entries[0]
    start, end = int(mm.mm_start_brk), int(mm.mm_brk)
    return (start, end) if 0 < end - start <= MAX_HEAP else None


def pages_tasks(
    contents: ArchiveContents,
    processes: Sequence[Process],
    shared: Sequence[SharedMemoryObject],
    *,
    everything: bool = True,
    only: str | None = None,
    known: Collection[str] = (),
    cache: dict[str, Pagemap] | None = None,
) -> dict[str, PagesTask]:
    """pages-<id>.img member -> what it holds (a process or a shared memory object);
    without ``everything`` only the shells whose heap holds history."""
    shells = {
        p.pid
        for p in processes
        if p.comm in HISTORY_SHELLS or (p.exe or "").rsplit("/", 1)[-1] in HISTORY_SHELLS
    }
    wanted_maps: list[tuple[str, str, str, int | None, tuple[int, ...]]] = [
        (f"checkpoint/pagemap-{p.pid}.img", "memory", f"pid {p.pid}", p.pid, ())
        for p in processes
        if everything or p.pid in shells
    ]
    for obj in shared if everything else []:
        label = f"{obj.kind} {obj.name or obj.shmid}"
        wanted_maps.append(
            (
                f"checkpoint/pagemap-shmem-{obj.shmid}.img",
                "shared-memory",
                label,
                None,
                tuple(obj.pids),
            )
        )

    def wanted(pages: str) -> bool:
        return pages not in known and (only is None or pages == only)

    out = {}
    for name, kind, target, pid, readers in wanted_maps:
        # the analyzer has already warned about missing pages and damaged images
        found = indexed_pages(
            contents, name, owner=(target, target), warnings=[], wanted=wanted, cache=cache
        )
        if found is None:
            continue
        pages, index = found.pages_name, found.index
        keep = _heap(contents, pid) if pid in shells else None
        out[pages] = PagesTask(index, kind, target, pid, keep=keep, readers=readers)
    return out


def _queue_bytes(q: QueueData | None) -> bytes:
    if q is None or not q.size_bytes:
        return b""
    return bytes.fromhex(q.hex) if q.hex else q.text.encode()


def _scan_other(
    scanner: YaraScanner, report: Report, contents: ArchiveContents, files: FileContents
) -> None:
    for path, blob in files.rootfs.items():
        scanner.scan(blob, kind="rootfs-diff", target=path)
    for label, blob in files.tmpfs.items():
        scanner.scan(blob, kind="tmpfs", target=label)
    table = FileTable.load(dict(contents.data), [])
    ghost_paths = {f.ghost.image: f.path for p in report.processes for f in p.open_files if f.ghost}
    for name, (_entry, content) in table.ghosts.items():
        scanner.scan(content, kind="ghost-file", target=ghost_paths.get(name, name))
    for sock in report.sockets:
        for direction, queue in (("receive", sock.receive_queue), ("send", sock.send_queue)):
            data = _queue_bytes(queue)
            if data:
                scanner.scan(data, kind="socket-queue", target=f"socket {sock.id} {direction}")
    for pipe in report.pipes:
        data = _queue_bytes(pipe.buffered)
        if data:
            scanner.scan(data, kind="pipe-queue", target=f"pipe:[{pipe.id}]")


def _history(tasks: dict[str, PagesTask]) -> list[HistoryEntry]:
    entries: list[HistoryEntry] = []
    for task in tasks.values():
        if task.keep is None or task.pid is None or not task.kept:
            continue
        memory = ProcessMemory.from_fragments(task.index, task.kept)
        entries += recover_history(task.pid, task.segments, memory)
    return entries


class FindingsPass:
    """The findings' work over one archive.

    Memory (credential anchors, YARA, a shell's heap) is best fed while the memory engine
    reads the pages anyway (``observers``, given to ``process_memory.MemoryPass``): the pages
    are then read once. ``finish`` reads what was not fed that way, and the rootfs and tmpfs
    files, then evaluates the rules. ``yara``: rule files and folders (compile errors are
    ConfigErrors); ``memory_secrets``: search all process memory for credentials.
    """

    def __init__(self, yara: Sequence[str] = (), *, memory_secrets: bool = True) -> None:
        self.scanner = YaraScanner(compile_rules(yara)) if yara else None
        self.secrets = MemoryCredentials(default_rules().credentials) if memory_secrets else None
        self.tasks: dict[str, PagesTask] | None = None
        #: pages members whose bytes were all seen through an observer
        self.fed: set[str] = set()
        #: pages members an observer saw only in part (the memory pass failed), with why
        self.broken: dict[str, str] = {}
        self._pagemaps: dict[str, Pagemap] = {}  # decoded once, however often observers() runs

    def observers(
        self,
        contents: ArchiveContents,
        processes: Sequence[Process],
        shared: Sequence[SharedMemoryObject],
        *,
        only: str | None = None,
    ) -> dict[str, PagesObserver]:
        """One observer per pages file the findings want and have not seen yet (this is asked
        once per pages member in an archive's first pass, and again by the memory pass). A
        failure here leaves the pages to ``finish``, which reads them itself."""
        known = self.tasks or {}
        try:
            planned = pages_tasks(
                contents,
                processes,
                shared,
                everything=self._everything,
                only=only,
                known=known,  # a task planned before keeps what it collected
                cache=self._pagemaps,
            )
        except Exception:  # untrusted images; finish() meets the same error in its own section
            return {}
        self.tasks = {**planned, **known}
        return {
            name: _Observer(self, name, task)
            for name, task in self.tasks.items()
            if (only is None or name == only) and name not in self.fed and name not in self.broken
        }

    @property
    def _everything(self) -> bool:
        return bool(self.scanner or self.secrets)

    def take(self, task: PagesTask, piece: Piece) -> None:
        """One piece of a process's (or shared object's) memory."""
        if task.keep is not None:  # a shell's heap; slicing a 16 MiB piece is a copy
            fresh = piece.data[piece.seen :] if piece.seen else piece.data
            task.take(piece.vaddr + piece.seen, piece.file_offset + piece.seen, fresh)
        # where the bytes are and who can read them, for both scans
        owner: dict[str, Any] = {"base": piece.vaddr, "pid": task.pid, "readers": task.readers}
        if self.secrets is not None:
            self.secrets.scan(piece.data, where=task.target, last=piece.last, **owner)
        if self.scanner is not None:
            self.scanner.scan(
                piece.data, kind=task.kind, target=task.target, seen=piece.seen, **owner
            )

    def finish(self, contents: ArchiveContents, report: Report) -> None:
        """Fill ``report.findings``, ``shell_history``, ``binaries``, ``timeline`` and
        ``connections`` (the report must not be redacted yet)."""
        # Every pages file the findings want: those planned for observers keep what they
        # collected, the others (a memory pass that stopped early) are planned now.
        known = self.tasks or {}
        tasks = {
            **pages_tasks(
                contents,
                report.processes,
                report.shared_memory,
                everything=self._everything,
                known=known,
                cache=self._pagemaps,
            ),
            **known,
        }
        files = FileContents()

        def visit(name: str, stream: Readable) -> None:
            task = tasks.get(name)
            if task is None:
                read_files(name, stream, files)
                return
            for piece in iter_runs(stream, task.index):
                self.take(task, piece)

        unread = set(tasks) - self.fed - set(self.broken)
        visit_members(contents, file_members(contents) | unread, visit)
        for name, why in sorted(self.broken.items()):
            report.warnings.append(f"findings: memory in {name} was scanned only in part: {why}")
        for path in files.skipped[:20]:
            report.warnings.append(f"findings: {path} is too large to inspect")
        detectors = list(default_rules().credentials.get("detectors") or [])
        report.shell_history = _history(tasks)
        for entry in report.shell_history:
            entry.command = mask_secrets(entry.command, detectors)
        report.binaries = mapped_binaries(report, contents.data)
        report.timeline = build_timeline(report, contents.data)
        for event in report.timeline:
            event.message = mask_secrets(event.message, detectors)
        report.connections = build_graph(report)
        memory_hits = self.secrets.hits if self.secrets else []
        found = find_all(
            report, contents.data, files.rootfs, _spec(contents), memory_secrets=memory_hits
        )
        if self.scanner is not None:
            _scan_other(self.scanner, report, contents, files)
            maps = {
                p.pid: [
                    (int(m.start, 16), int(m.end, 16), f"{m.start}-{m.end} {m.perms} {m.name}")
                    for m in p.maps
                ]
                for p in report.processes
            }
            found = sort_findings(found + hits_to_findings(self.scanner.hits.values(), maps))
        report.findings = found


class _Observer:
    """Feeds one pages file, as the memory engine reads it, to a FindingsPass. A failure here
    must not cost the memory results: it is kept and reported as a findings warning."""

    def __init__(self, owner: FindingsPass, name: str, task: PagesTask) -> None:
        self._owner, self._name, self._task = owner, name, task
        self._pieces = RunPieces(task.index)
        self._failed = False

    def feed(self, data: bytes) -> None:
        self._owner.broken.setdefault(self._name, "the memory pass stopped")
        self._take(self._pieces.feed(data))

    def finish(self) -> None:
        if self._take(self._pieces.finish()):
            self._owner.broken.pop(self._name, None)
            self._owner.fed.add(self._name)

    def _take(self, pieces: Iterator[Piece]) -> bool:
        if self._failed:
            return False
        try:
            for piece in pieces:
                self._owner.take(self._task, piece)
        except Exception as exc:  # untrusted bytes: one pages file, never the whole analysis
            self._failed = True
            self._owner.broken[self._name] = f"{type(exc).__name__}: {exc}"[:200]
        return not self._failed


def add_findings(
    report: Report,
    contents: ArchiveContents,
    yara: Sequence[str] = (),
    *,
    memory_secrets: bool = True,
) -> None:
    """The findings of an analysed report in one call, reading the pages themselves (tests and
    callers that did not feed a FindingsPass during the memory pass)."""
    FindingsPass(yara, memory_secrets=memory_secrets).finish(contents, report)
