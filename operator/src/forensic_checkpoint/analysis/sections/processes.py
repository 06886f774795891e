"""The process tree: pstree.img joined with core, ids, fs, mm and fdinfo images per task.

PIDs are the container's own (namespace-local). Task states follow compel's numbering
(1 alive, 2 dead, 3 stopped, 6 zombie); CRIU writes a zombie as state 2 with only a core
image, so both 2 and 6 are reported as "zombie" and such tasks have no files or memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from forensic_checkpoint.analysis.format.criu_images import checkpoint_image, first_entry
from forensic_checkpoint.analysis.memory.vmas import (
    MAP_SHARED,
)
from forensic_checkpoint.analysis.model.process import Process, Thread
from forensic_checkpoint.analysis.model.report import Holder, Mount, Namespace
from forensic_checkpoint.analysis.sections.files import FileTable
from forensic_checkpoint.analysis.sections.memory_maps import memory_map
from forensic_checkpoint.analysis.sections.namespaces import NS_FIELDS, namespace_details
from forensic_checkpoint.analysis.sections.task_details import creds_and_seccomp

TASK_STATES = {1: "alive", 2: "zombie", 3: "stopped", 6: "zombie"}
#: Bounds on what one image may make the report hold (a hostile pstree.img or fdinfo image
#: can list millions of entries in a few MiB); real containers stay far below them.
MAX_TASKS = 65_536
MAX_THREADS = 65_536
MAX_FDS = 65_536
MAX_VMAS = 262_144


@dataclass
class TaskImages:
    """The decoded per-task images the rest of the analysis needs again (memory, files)."""

    pid: int
    core: Any = None
    ids: Any = None
    mm: Any = None
    files_id: int | None = None


@dataclass
class ProcessTree:
    processes: list[Process] = field(default_factory=list)
    tasks: dict[int, TaskImages] = field(default_factory=dict)
    #: files.img id -> holders (pid, fd), for sockets and pipes
    fd_map: dict[int, list[Holder]] = field(default_factory=dict)
    namespaces: list[Namespace] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    hostname: str | None = None
    domainname: str | None = None


class _Provisional(NamedTuple):
    """A pstree entry stand-in: a pid known from its mm image (see ``provisional_tree``)."""

    pid: int
    ppid: int = 0
    pgid: int = 0
    sid: int = 0
    threads: tuple[int, ...] = ()


_MM_IMAGE = re.compile(r"checkpoint/mm-(\d+)\.img")


def provisional_tree(data: dict[str, bytes], table: FileTable) -> ProcessTree:
    """A memory-only tree before pstree.img has been read: one process per ``mm-<pid>.img``.

    Every engine writes pstree.img after the pages (lexical order) but the core, mm, ids and
    fdinfo images before them, so this is what a first pass knows when the pages arrive. Each
    process is built by the same code as in ``build_process_tree`` (same maps and names);
    only the parent ids and threads are unknown."""
    pids = sorted(int(m[1]) for name in data if (m := _MM_IMAGE.fullmatch(name)))
    return build_process_tree(
        data, table, [], memory_only=True, entries=[_Provisional(pid) for pid in pids]
    )


def _pstree_entries(data: dict[str, bytes], warnings: list[str]) -> list[Any] | None:
    pstree = checkpoint_image(data, "PSTREE", "pstree.img", warnings)
    if pstree is None:
        warnings.append("pstree.img is missing or unreadable: no process tree")
        return None
    return list(pstree.entries)


def build_process_tree(
    data: dict[str, bytes],
    table: FileTable,
    warnings: list[str],
    *,
    memory_only: bool = False,
    entries: Sequence[Any] | None = None,
) -> ProcessTree:
    """Decode the tree. ``memory_only`` (the ``search`` command) keeps what memory needs: pids,
    exe, mm images and maps, fd holders (shared memory objects); threads, credentials, seccomp,
    cwd/root, open files and namespaces are left empty, and their images undecoded.
    ``entries``: the tasks to build instead of pstree.img's (``provisional_tree``)."""
    tree = ProcessTree()
    entries = _pstree_entries(data, warnings) if entries is None else entries
    if entries is None:
        return tree
    seccomp_img = (
        None if memory_only else checkpoint_image(data, "SECCOMP", "seccomp.img", warnings)
    )
    build = _Build(
        data=data,
        table=table,
        tree=tree,
        warnings=warnings,
        memory_only=memory_only,
        filters=(
            list(seccomp_img.entries[0].seccomp_filters)
            if seccomp_img and seccomp_img.entries
            else []
        ),
    )
    seen_ns: dict[tuple[str, int], Namespace] = {}
    if len(entries) > MAX_TASKS:
        warnings.append(f"pstree.img lists {len(entries)} tasks; the first {MAX_TASKS} kept")
    for entry in entries[:MAX_TASKS]:
        proc = build.process(entry)
        tree.processes.append(proc)
        if not memory_only:
            _record_namespaces(proc, tree.tasks[proc.pid], seen_ns)
    tree.namespaces = list(seen_ns.values())
    if not memory_only:
        details = namespace_details(tree.namespaces, data, warnings)
        tree.mounts = details.mounts
        tree.hostname, tree.domainname = details.hostname, details.domainname
    return tree


@dataclass
class _Build:
    """What building each process of one tree needs."""

    data: dict[str, bytes]
    table: FileTable
    tree: ProcessTree
    warnings: list[str]
    memory_only: bool
    #: seccomp.img's filters, which the tasks' cores index
    filters: list[Any]

    def image(self, kind: str, base: str) -> Any:
        """The one entry of ``checkpoint/<base>``, or None."""
        return first_entry(checkpoint_image(self.data, kind, base, self.warnings))

    def process(self, entry: Any) -> Process:
        """One pstree entry as a Process; its decoded images go to ``tree.tasks``."""
        pid = int(entry.pid)
        core = self.image("CORE", f"core-{pid}.img")
        task = TaskImages(pid=pid, core=core)
        self.tree.tasks[pid] = task
        tc = core.tc if core is not None and core.HasField("tc") else None
        state_code = int(tc.task_state) if tc is not None else 0
        state = TASK_STATES.get(state_code, f"state{state_code}" if state_code else "unknown")
        comm = str(tc.comm) if tc is not None else ""
        proc = Process(
            pid=pid,
            ppid=int(entry.ppid),
            pgid=int(entry.pgid),
            sid=int(entry.sid),
            comm=comm,
            state=state,
        )
        if tc is not None and state == "zombie":
            proc.exit_code = int(tc.exit_code)
        if not self.memory_only:
            proc.threads = _threads(entry, core, comm, self.data, self.warnings)
            if core is not None and core.HasField("thread_core"):
                creds_and_seccomp(proc, core.thread_core, self.filters)
        if state != "zombie":
            self.task_resources(proc, task)
        return proc

    def task_resources(self, proc: Process, task: TaskImages) -> None:
        """cwd/root, executable and memory maps, open files: what a live task holds."""
        pid = proc.pid
        ids = self.image("IDS", f"ids-{pid}.img")
        if ids is None and task.core is not None and task.core.HasField("ids"):
            ids = task.core.ids
        task.ids = ids
        fs = None if self.memory_only else self.image("FS", f"fs-{pid}.img")
        if fs is not None:
            proc.cwd = self.table.path(int(fs.cwd_id))
            proc.root = self.table.path(int(fs.root_id))
        mm = self.image("MM", f"mm-{pid}.img")
        task.mm = mm
        if mm is not None:
            _memory(proc, mm, self.table, self.warnings)
        if ids is not None:
            task.files_id = int(ids.files_id)
            self.open_files(proc, task.files_id)

    def open_files(self, proc: Process, files_id: int) -> None:
        """The task's fds (fdinfo-<files_id>.img) as open files and as holders of their files."""
        pid = proc.pid
        fdinfo = checkpoint_image(self.data, "FDINFO", f"fdinfo-{files_id}.img", self.warnings)
        entries = fdinfo.entries if fdinfo else []
        if len(entries) > MAX_FDS:
            self.warnings.append(
                f"pid {pid} has {len(entries)} open files; the first {MAX_FDS} kept"
            )
        for fd in entries[:MAX_FDS]:
            file_id = int(fd.id)
            if not self.memory_only:
                proc.open_files.append(self.table.open_file(int(fd.fd), file_id, int(fd.type)))
            self.tree.fd_map.setdefault(file_id, []).append(Holder(pid=pid, fd=int(fd.fd)))
        proc.open_files.sort(key=lambda f: f.fd if isinstance(f.fd, int) else -1)


def _record_namespaces(
    proc: Process, task: TaskImages, seen: dict[tuple[str, int], Namespace]
) -> None:
    ids = task.ids
    if ids is None:
        return
    for ns_type, attr in NS_FIELDS:
        if ids.HasField(attr):
            ns_id = int(getattr(ids, attr))
            proc.namespaces[ns_type] = ns_id
            if (ns_type, ns_id) not in seen:
                seen[(ns_type, ns_id)] = Namespace(type=ns_type, id=ns_id)


def _threads(
    entry: Any, core: Any, comm: str, data: dict[str, bytes], warnings: list[str]
) -> list[Thread]:
    """The task's threads with their names (each thread has its own core-<tid>.img)."""
    pid = int(entry.pid)
    if len(entry.threads) > MAX_THREADS:
        warnings.append(f"pid {pid} lists {len(entry.threads)} threads; {MAX_THREADS} kept")
    threads = []
    for raw_tid in entry.threads[:MAX_THREADS]:
        tid = int(raw_tid)
        tcore = (
            core
            if tid == pid
            else first_entry(checkpoint_image(data, "CORE", f"core-{tid}.img", warnings))
        )
        thread = Thread(tid=tid)
        if tcore is not None and tcore.HasField("thread_core") and tcore.thread_core.comm:
            thread.comm = str(tcore.thread_core.comm)
        elif tid == pid:
            thread.comm = comm
        threads.append(thread)
    return threads


def _memory(proc: Process, mm: Any, table: FileTable, warnings: list[str]) -> None:
    """Executable, memory maps and shared size from the mm image."""
    if mm.HasField("exe_file_id"):  # memory_only too: the findings spot shells by it
        proc.exe = table.path(int(mm.exe_file_id))
    if len(mm.vmas) > MAX_VMAS:
        warnings.append(f"mm-{proc.pid}.img lists {len(mm.vmas)} memory areas; {MAX_VMAS} kept")
    proc.maps = [memory_map(v, table) for v in mm.vmas[:MAX_VMAS]]
    # CRIU flags only some stacks with VMA_AREA_STACK; mm_start_stack names the main one.
    start_stack = int(mm.mm_start_stack)
    for area in proc.maps:
        if area.name == "[anon]" and int(area.start, 16) <= start_stack < int(area.end, 16):
            area.name = "[stack]"
    proc.shared_memory_size_bytes = sum(
        int(v.end) - int(v.start) for v in mm.vmas if int(v.flags) & MAP_SHARED
    )
