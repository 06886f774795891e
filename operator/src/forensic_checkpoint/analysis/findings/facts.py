"""Subjects for the rules: flat dicts of facts drawn from the report and the CRIU images.

Every subject has ``_kind`` (the rule ``subject`` it answers) and ``_key`` (what makes its
finding id stable). Facts are computed once here so that the rules stay pure data. Process
subjects, the richest, are in ``process_facts``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forensic_checkpoint.analysis.findings.packages import package_owners
from forensic_checkpoint.analysis.memory import Vma, parse_pagemap, vmas_from_mm
from forensic_checkpoint.analysis.memory.vmas import (
    PROT_EXEC,
    PROT_WRITE,
    VMA_ANON_PRIVATE,
    VMA_ANON_SHARED,
    VMA_AREA_MEMFD,
    VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL,
    VMA_AREA_VVAR,
    VMA_FILE_PRIVATE,
)
from forensic_checkpoint.analysis.model.process import Process
from forensic_checkpoint.analysis.model.report import Report
from forensic_checkpoint.errors import ImageError

Subject = dict[str, Any]

_SPECIAL = VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL
#: capabilities a CRI runtime grants by default (containerd/CRI-O/Docker default set)
DEFAULT_CAPS = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)


@dataclass
class Inputs:
    """What the findings see: the unredacted report, the small images, rootfs file heads."""

    report: Report
    images: Mapping[str, bytes] = field(default_factory=dict)
    #: absolute path -> first bytes of that rootfs-diff file (small files only)
    rootfs_files: Mapping[str, bytes] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)


def basename(path: str | None) -> str:
    return posixpath.basename(path or "")


# --- environment ---------------------------------------------------------------------------


def env_subjects(inp: Inputs) -> list[Subject]:
    report = inp.report
    mapped = {m.name for p in report.processes for m in p.maps}
    changed = {e.path: e for e in report.rootfs.changed}
    out = []
    for p in report.processes:
        for var in p.env:
            entry = changed.get(var.value)
            out.append(
                {
                    "_kind": "env",
                    "_key": f"pid={p.pid},name={var.name}",
                    "pid": p.pid,
                    "comm": p.comm,
                    "name": var.name,
                    "value": var.value,
                    "assignment": f"{var.name}={var.value}",
                    "value_mapped": "yes" if var.value in mapped else "no",
                    "value_in_rootfs_diff": f"yes, {entry.size_bytes} bytes" if entry else "no",
                }
            )
    return out


# --- rootfs-diff --------------------------------------------------------------------------


def _excerpt(data: bytes | None, limit: int = 300) -> str | None:
    if data is None:
        return None
    text = data[:limit].decode("utf-8", "replace")
    return text + ("..." if len(data) > limit else "")


#: what CPython writes when it caches a module's bytecode (PEP 3147, PEP 488):
#: <dir>/__pycache__/<module>.cpython-<XY>[.opt-N].pyc for <dir>/<module>.py
_BYTECODE = re.compile(r"^(.*)/__pycache__/([^/]+?)\.cpython-[0-9]+(?:\.opt-[12])?\.pyc$")


def bytecode_source(path: str) -> str | None:
    """The source a bytecode cache file was compiled from, if ``path`` has that shape."""
    m = _BYTECODE.match(path)
    return f"{m[1]}/{m[2]}.py" if m else None


def file_subjects(inp: Inputs) -> list[Subject]:
    report = inp.report
    deleted = set(report.rootfs.deleted)
    mountpoints = {m.mountpoint for m in report.mounts}
    executed = {p.exe for p in report.processes} | {
        m.name for p in report.processes for m in p.maps if "x" in m.perms
    }
    owners = package_owners(inp.rootfs_files)
    out = []
    for e in report.rootfs.changed:
        mode = int(e.mode, 8) if e.mode else 0
        source = bytecode_source(e.path)
        out.append(
            {
                "_kind": "file",
                "_key": f"path={e.path}",
                "path": e.path,
                "basename": basename(e.path),
                "type": e.type,
                "mode": e.mode,
                "size": e.size_bytes,
                "sha256": e.sha256,
                "mtime": e.mtime,
                "link_target": e.link_target,
                "executable": e.type == "file" and bool(mode & 0o111),
                "setuid": e.type == "file" and bool(mode & 0o6000),
                "mountpoint": e.path in mountpoints,
                "executed": e.path in executed,
                "cleared": (e.type == "file" and e.size_bytes == 0)
                or (e.type == "symlink" and e.link_target == "/dev/null"),
                "excerpt": _excerpt(inp.rootfs_files.get(e.path)),
                "bytecode_source": source,
                "bytecode_source_deleted": source in deleted if source else None,
                "package": owners.get(e.path),
                "rule_group": "package-db",
            }
        )
    for path in report.rootfs.deleted:
        out.append(
            {
                "_kind": "file",
                "_key": f"path={path}",
                "path": path,
                "basename": basename(path),
                "type": "deleted",
                "mountpoint": path in mountpoints,
                "executed": False,
                "executable": False,
                "setuid": False,
                "cleared": True,
                "rule_group": "package-db",
            }
        )
    return out


# --- memory mappings ------------------------------------------------------------------------


def _dumped(entries: Iterable[Any], start: int, end: int, page: int) -> list[tuple[int, int]]:
    """Present pagemap runs clipped to [start, end)."""
    out = []
    for e in entries:
        lo, hi = e.vaddr, e.vaddr + e.nr_pages * page
        if e.present and lo < end and hi > start:
            out.append((max(lo, start), min(hi, end)))
    return out


def mapping_subjects(inp: Inputs) -> list[Subject]:
    report = inp.report
    page = report.memory.page_size or 4096
    out = []
    for p in report.processes:
        mm_blob = inp.images.get(f"checkpoint/mm-{p.pid}.img")
        pm_blob = inp.images.get(f"checkpoint/pagemap-{p.pid}.img")
        if mm_blob is None or pm_blob is None:
            continue
        try:
            vmas = vmas_from_mm(mm_blob)
            entries = parse_pagemap(pm_blob).entries
        except ImageError:
            continue
        names = {int(m.start, 16): m for m in p.maps}
        written = {e.path for e in report.rootfs.changed if e.type == "file"}
        # compel runs the parasite's first syscalls by writing them at the start of the first
        # executable VMA in /proc/PID/maps order (compel/src/lib/infect.c,
        # find_executable_area) and restoring the bytes after; that page is then a COW copy
        # that CRIU dumps. It is not evidence.
        patched = next((v.start for v in vmas if v.prot & PROT_EXEC), None)
        for v in vmas:
            out.append(
                _mapping(p, v, names=names, entries=entries, page=page, patched=patched)
                | {
                    "backing_in_rootfs_diff": (names[v.start].name if v.start in names else "")
                    in written
                }
            )
    return out


def _modified(
    runs: list[tuple[int, int]], start: int, page: int, patched: int | None
) -> list[tuple[int, int]]:
    """The dumped runs without the one page compel patched (see ``mapping_subjects``)."""
    modified = list(runs)
    if start == patched and modified and modified[0][0] == start:
        lo, hi = modified[0]
        modified[0] = (lo + page, hi)
        modified = [(lo, hi) for lo, hi in modified if hi > lo]
    return modified


def _mapping(
    p: Process,
    v: Vma,
    *,
    names: Mapping[int, Any],
    entries: Iterable[Any],
    page: int,
    patched: int | None,
) -> Subject:
    area = names.get(v.start)
    name = area.name if area is not None else v.description
    perms = area.perms if area is not None else "?"
    runs = _dumped(entries, v.start, v.end, page)
    modified = _modified(runs, v.start, page, patched)
    memfd = bool(v.status & VMA_AREA_MEMFD)
    return {
        "_kind": "mapping",
        "_key": f"pid={p.pid},start=0x{v.start:x}",
        "pid": p.pid,
        "comm": p.comm,
        "exe_basename": basename(p.exe),
        "start": f"0x{v.start:x}",
        "mapping": f"0x{v.start:x}-0x{v.end:x} {perms} {name}",
        "backing": name,
        "prot_write": bool(v.prot & PROT_WRITE),
        "prot_exec": bool(v.prot & PROT_EXEC),
        "special": bool(v.status & _SPECIAL),
        "anonymous": bool(v.status & (VMA_ANON_PRIVATE | VMA_ANON_SHARED)) and not memfd,
        "file_private": bool(v.status & VMA_FILE_PRIVATE) and not memfd,
        "memfd": memfd,
        "exe_mapping": name.lstrip("/") == (p.exe or "").lstrip("/"),
        "dumped_bytes": sum(hi - lo for lo, hi in runs),
        "modified_pages": sum(hi - lo for lo, hi in modified) // page,
        "modified_bytes": sum(hi - lo for lo, hi in modified),
        "first_modified": f"0x{modified[0][0]:x}" if modified else None,
    }


# --- spec.dump ---------------------------------------------------------------------------


def mount_subjects(inp: Inputs) -> list[Subject]:
    out = []
    for m in inp.spec.get("mounts") or []:
        if not isinstance(m, dict):
            continue
        options = [str(o) for o in m.get("options") or []]
        source = str(m.get("source") or "")
        out.append(
            {
                "_kind": "mount",
                "_key": f"destination={m.get('destination')}",
                "destination": str(m.get("destination") or ""),
                "source": source.rstrip("/") or "/",
                "type": str(m.get("type") or ""),
                "options": ",".join(options),
                "bind": m.get("type") == "bind" or "bind" in options or "rbind" in options,
            }
        )
    return out


def container_subjects(inp: Inputs, lists: Mapping[str, list[str]]) -> list[Subject]:
    spec = inp.spec
    if not spec:
        return []
    process = spec.get("process") or {}
    caps = process.get("capabilities") or {}
    granted = set(caps.get("bounding") or []) | set(caps.get("effective") or [])
    added = sorted(granted - DEFAULT_CAPS)
    dangerous = sorted(set(added) & set(lists.get("dangerous_caps", [])))
    signs = _privileged_signs(granted, process, spec.get("linux") or {})
    return [
        {
            "_kind": "container",
            "_key": "container",
            "added_caps": ", ".join(added) or None,
            "dangerous_added_caps": ", ".join(dangerous) or None,
            "privileged_signs": ", ".join(signs) or None,
        }
    ]


def _privileged_signs(
    granted: set[str], process: Mapping[str, Any], linux: Mapping[str, Any]
) -> list[str]:
    """What makes a container privileged: every capability, host namespaces, no AppArmor."""
    namespaces = {n.get("type") for n in linux.get("namespaces") or [] if isinstance(n, dict)}
    signs = []
    if "CAP_SYS_ADMIN" in granted and len(granted) >= 35:
        signs.append(f"all capabilities ({len(granted)})")
    for ns in ("pid", "network", "ipc"):
        if "namespaces" in linux and ns not in namespaces:
            signs.append(f"host {ns} namespace")
    if process.get("apparmorProfile") == "unconfined":
        signs.append("AppArmor unconfined")
    return signs


# --- container log ------------------------------------------------------------------------

_CRI_LINE = re.compile(r"^(\S+) (stdout|stderr) [FP] ?(.*)$")


def log_subjects(inp: Inputs) -> list[Subject]:
    """One subject per CRI log line in the kept tail, with the URL-decoded text (web
    servers log request lines percent-encoded)."""
    from urllib.parse import unquote_plus

    log = inp.report.log
    if log is None:
        return []
    out = []
    for n, line in enumerate(log.content.splitlines()):
        m = _CRI_LINE.match(line)
        text = m.group(3) if m else line
        out.append(
            {
                "_kind": "logline",
                "_key": f"line={n}",
                "time": m.group(1) if m else None,
                "stream": m.group(2) if m else None,
                "text": text[:2000],
                "decoded": unquote_plus(text)[:2000],
                "member": log.member,
            }
        )
    return out
