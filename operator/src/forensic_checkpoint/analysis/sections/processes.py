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

from forensic_checkpoint.analysis.format.criu_images import Image, try_decode
from forensic_checkpoint.analysis.memory.vmas import (
    MAP_SHARED,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    VMA_ANON_SHARED,
    VMA_AREA_AIORING,
    VMA_AREA_HEAP,
    VMA_AREA_MEMFD,
    VMA_AREA_SOCKET,
    VMA_AREA_STACK,
    VMA_AREA_SYSVIPC,
    VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL,
    VMA_AREA_VVAR,
    VMA_FILE_PRIVATE,
    VMA_FILE_SHARED,
)
from forensic_checkpoint.analysis.model.report import (
    Credentials,
    Holder,
    MemoryMap,
    Mount,
    Namespace,
    Process,
    Seccomp,
    Thread,
)
from forensic_checkpoint.analysis.sections.files import FileTable

TASK_STATES = {1: "alive", 2: "zombie", 3: "stopped", 6: "zombie"}
SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}
CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]
NS_FIELDS = (
    ("pid", "pid_ns_id"),
    ("net", "net_ns_id"),
    ("ipc", "ipc_ns_id"),
    ("uts", "uts_ns_id"),
    ("mnt", "mnt_ns_id"),
    ("user", "user_ns_id"),
    ("cgroup", "cgroup_ns_id"),
    ("time", "time_ns_id"),
)
#: Bounds on what one image may make the report hold (a hostile pstree.img or fdinfo image
#: can list millions of entries in a few MiB); real containers stay far below them.
MAX_TASKS = 65_536
MAX_THREADS = 65_536
MAX_FDS = 65_536
MAX_VMAS = 262_144


def capability_names(words: Any) -> list[str]:
    names = []
    for word_index, word in enumerate(words):
        for bit in range(32):
            if int(word) >> bit & 1:
                cap = word_index * 32 + bit
                names.append(CAPABILITIES[cap] if cap < len(CAPABILITIES) else f"CAP_{cap}")
    return names


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


def _entry(image: Image | None) -> Any:
    return image.entries[0] if image and image.entries else None


def _img(data: dict[str, bytes], kind: str, base: str, warnings: list[str]) -> Image | None:
    return try_decode(kind, data.get(f"checkpoint/{base}"), base, warnings)


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
    pstree = _img(data, "PSTREE", "pstree.img", warnings)
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
    seccomp_img = None if memory_only else _img(data, "SECCOMP", "seccomp.img", warnings)
    filters = (
        list(seccomp_img.entries[0].seccomp_filters) if seccomp_img and seccomp_img.entries else []
    )
    seen_ns: dict[tuple[str, int], Namespace] = {}
    if len(entries) > MAX_TASKS:
        warnings.append(f"pstree.img lists {len(entries)} tasks; the first {MAX_TASKS} kept")
    for entry in entries[:MAX_TASKS]:
        pid = int(entry.pid)
        core = _entry(_img(data, "CORE", f"core-{pid}.img", warnings))
        task = TaskImages(pid=pid, core=core)
        tree.tasks[pid] = task
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
        if not memory_only:
            proc.threads = _threads(entry, core, comm, data, warnings)
            if core is not None and core.HasField("thread_core"):
                _creds_and_seccomp(proc, core.thread_core, filters)
        if state != "zombie":
            _task_resources(
                proc=proc,
                task=task,
                data=data,
                table=table,
                tree=tree,
                warnings=warnings,
                memory_only=memory_only,
            )
        tree.processes.append(proc)
        if memory_only:
            continue
        for ns_type, attr in NS_FIELDS:
            ids = task.ids
            if ids is not None and ids.HasField(attr):
                ns_id = int(getattr(ids, attr))
                proc.namespaces[ns_type] = ns_id
                if (ns_type, ns_id) not in seen_ns:
                    seen_ns[(ns_type, ns_id)] = Namespace(type=ns_type, id=ns_id)
    tree.namespaces = list(seen_ns.values())
    if not memory_only:
        _namespace_details(tree, data, warnings)
    return tree


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
        tcore = core if tid == pid else _entry(_img(data, "CORE", f"core-{tid}.img", warnings))
        thread = Thread(tid=tid)
        if tcore is not None and tcore.HasField("thread_core") and tcore.thread_core.comm:
            thread.comm = str(tcore.thread_core.comm)
        elif tid == pid:
            thread.comm = comm
        threads.append(thread)
    return threads


def _creds_and_seccomp(proc: Process, thread_core: Any, filters: list[Any]) -> None:
    if thread_core.HasField("creds"):
        c = thread_core.creds
        proc.credentials = Credentials(
            uid=int(c.uid),
            euid=int(c.euid),
            suid=int(c.suid),
            fsuid=int(c.fsuid),
            gid=int(c.gid),
            egid=int(c.egid),
            sgid=int(c.sgid),
            fsgid=int(c.fsgid),
            groups=[int(g) for g in c.groups],
            cap_effective=capability_names(c.cap_eff),
            cap_permitted=capability_names(c.cap_prm),
            cap_inheritable=capability_names(c.cap_inh),
            cap_bounding=capability_names(c.cap_bnd),
        )
    if thread_core.HasField("seccomp_mode"):
        mode = int(thread_core.seccomp_mode)
        seccomp = Seccomp(mode=SECCOMP_MODES.get(mode, str(mode)))
        if mode == 2 and thread_core.HasField("seccomp_filter"):
            # seccomp_filter indexes seccomp.img's filter list (the innermost filter); each
            # filter's optional prev links to the one installed before it (criu/seccomp.c).
            index: int | None = int(thread_core.seccomp_filter)
            hops = 0
            while index is not None and 0 <= index < len(filters) and hops < len(filters):
                flt = filters[index]
                seccomp.filters += 1
                seccomp.filter_instructions += len(bytes(flt.filter)) // 8
                index = int(flt.prev) if flt.HasField("prev") else None
                hops += 1
        proc.seccomp = seccomp


def _task_resources(
    *,
    proc: Process,
    task: TaskImages,
    data: dict[str, bytes],
    table: FileTable,
    tree: ProcessTree,
    warnings: list[str],
    memory_only: bool,
) -> None:
    pid = proc.pid
    ids = _entry(_img(data, "IDS", f"ids-{pid}.img", warnings))
    if ids is None and task.core is not None and task.core.HasField("ids"):
        ids = task.core.ids
    task.ids = ids
    fs = None if memory_only else _entry(_img(data, "FS", f"fs-{pid}.img", warnings))
    if fs is not None:
        proc.cwd = table.path(int(fs.cwd_id))
        proc.root = table.path(int(fs.root_id))
    mm = _entry(_img(data, "MM", f"mm-{pid}.img", warnings))
    task.mm = mm
    if mm is not None:
        if mm.HasField("exe_file_id"):  # memory_only too: the findings spot shells by it
            proc.exe = table.path(int(mm.exe_file_id))
        if len(mm.vmas) > MAX_VMAS:
            warnings.append(f"mm-{pid}.img lists {len(mm.vmas)} memory areas; {MAX_VMAS} kept")
        proc.maps = [_vma(v, table) for v in mm.vmas[:MAX_VMAS]]
        # CRIU flags only some stacks with VMA_AREA_STACK; mm_start_stack names the main one.
        start_stack = int(mm.mm_start_stack)
        for area in proc.maps:
            if area.name == "[anon]" and int(area.start, 16) <= start_stack < int(area.end, 16):
                area.name = "[stack]"
        proc.shared_memory_size_bytes = sum(
            int(v.end) - int(v.start) for v in mm.vmas if int(v.flags) & MAP_SHARED
        )
    if ids is None:
        return
    task.files_id = int(ids.files_id)
    fdinfo = _img(data, "FDINFO", f"fdinfo-{int(ids.files_id)}.img", warnings)
    entries = fdinfo.entries if fdinfo else []
    if len(entries) > MAX_FDS:
        warnings.append(f"pid {pid} has {len(entries)} open files; the first {MAX_FDS} kept")
    for fd in entries[:MAX_FDS]:
        file_id = int(fd.id)
        if not memory_only:
            proc.open_files.append(table.open_file(int(fd.fd), file_id, int(fd.type)))
        tree.fd_map.setdefault(file_id, []).append(Holder(pid=pid, fd=int(fd.fd)))
    proc.open_files.sort(key=lambda f: f.fd if isinstance(f.fd, int) else -1)


def _vma(v: Any, table: FileTable) -> MemoryMap:
    status = int(v.status)
    prot = int(v.prot)
    shmid = int(v.shmid)
    if status & VMA_AREA_STACK:
        name = "[stack]"
    elif status & VMA_AREA_HEAP:
        name = "[heap]"
    elif status & VMA_AREA_VDSO:
        name = "[vdso]"
    elif status & VMA_AREA_VVAR:
        name = "[vvar]"
    elif status & VMA_AREA_VSYSCALL:
        name = "[vsyscall]"
    elif status & (VMA_AREA_MEMFD | VMA_FILE_PRIVATE | VMA_FILE_SHARED):
        name = table.path(shmid)
    elif status & VMA_AREA_SYSVIPC:
        name = f"SYSV{shmid:08x}"
    elif status & VMA_AREA_SOCKET:
        name = f"socket:{shmid}"
    elif status & VMA_AREA_AIORING:
        name = "[aio]"
    elif status & VMA_ANON_SHARED:
        name = "[anon:shared]"
    else:
        name = "[anon]"
    perms = (
        ("r" if prot & PROT_READ else "-")
        + ("w" if prot & PROT_WRITE else "-")
        + ("x" if prot & PROT_EXEC else "-")
        + ("s" if int(v.flags) & MAP_SHARED else "p")
    )
    return MemoryMap(
        start=f"0x{int(v.start):x}",
        end=f"0x{int(v.end):x}",
        size_bytes=int(v.end) - int(v.start),
        perms=perms,
        name=name,
        offset=int(v.pgoff),
        shared=bool(int(v.flags) & MAP_SHARED),
    )


def _fstype(mount: Any) -> str:
    if mount.HasField("fsname") and mount.fsname:
        return str(mount.fsname)
    enum = mount.DESCRIPTOR.file.enum_types_by_name.get("fstype")
    value = enum.values_by_number.get(int(mount.fstype)) if enum is not None else None
    name = value.name.lower() if value is not None else str(int(mount.fstype))
    return {"overlayfs": "overlay", "unsupported": "other"}.get(name, name)


def _namespace_details(tree: ProcessTree, data: dict[str, bytes], warnings: list[str]) -> None:
    for ns in tree.namespaces:
        if ns.type == "uts":
            uts = _entry(_img(data, "UTSNS", f"utsns-{ns.id}.img", warnings))
            if uts is not None:
                ns.details = {"nodename": str(uts.nodename), "domainname": str(uts.domainname)}
                if tree.hostname is None:
                    tree.hostname = str(uts.nodename)
                    tree.domainname = str(uts.domainname)
        elif ns.type == "net":
            net = _entry(_img(data, "NETNS", f"netns-{ns.id}.img", warnings))
            if net is not None and net.HasField("ext_key"):
                ns.details = {"external": str(net.ext_key)}
        elif ns.type == "mnt":
            mnts = _img(data, "MNTS", f"mountpoints-{ns.id}.img", warnings)
            for m in mnts.entries if mnts else []:
                tree.mounts.append(
                    Mount(
                        mountpoint=str(m.mountpoint),
                        fstype=_fstype(m),
                        source=str(m.source),
                        root=str(m.root),
                        options=str(m.options) or None,
                        external=str(m.ext_key) if m.HasField("ext_key") else None,
                        origin="criu",
                    )
                )
    if tree.hostname is None:
        # The UTS image is named after the namespace id; some runtimes share it with a pod
        # sandbox, so take any utsns image when the ids do not lead to one.
        for name, blob in sorted(data.items()):
            if name.startswith("checkpoint/utsns-"):
                uts = _entry(try_decode("UTSNS", blob, name.rsplit("/", 1)[-1], warnings))
                if uts is not None:
                    tree.hostname = str(uts.nodename)
                    tree.domainname = str(uts.domainname)
                    break
