"""Crafted reports and CRIU images for rule tests, built from the formats (pycriu messages)."""

from __future__ import annotations

from typing import Any

from pycriu.images import mm_pb2, pagemap_pb2
from tests.factories import criu_image

from forensic_checkpoint.analysis.model.process import EnvVar, MemoryMap, OpenFile, Process
from forensic_checkpoint.analysis.model.report import (
    Holder,
    Pipe,
    Report,
    Rootfs,
    RootfsEntry,
    Socket,
)

MM, PAGEMAP = 0x57492820, 0x56084025
PE_PRESENT = 4
# criu/include/image.h
REGULAR, VDSO, FILE_PRIVATE, ANON_PRIVATE, MEMFD = 1, 1 << 3, 1 << 6, 1 << 9, 1 << 14
R, W, X = 1, 2, 4


def mm_image(vmas: list[tuple[int, int, int, int]], arg_start: int = 0) -> bytes:
    """VMAs as (start, end, prot, status)."""
    mm = mm_pb2.mm_entry(
        mm_start_code=0,
        mm_end_code=0,
        mm_start_data=0,
        mm_end_data=0,
        mm_start_stack=0,
        mm_start_brk=0,
        mm_brk=0,
        mm_arg_start=arg_start,
        mm_arg_end=arg_start + 4096,
        mm_env_start=0,
        mm_env_end=0,
        exe_file_id=0,
    )
    for start, end, prot, status in vmas:
        mm.vmas.add(
            start=start, end=end, pgoff=0, shmid=0, prot=prot, flags=2, status=status, fd=-1
        )
    return criu_image(MM, [mm.SerializeToString()])


def pagemap_image(runs: list[tuple[int, int]]) -> bytes:
    """Present runs as (vaddr, nr_pages), CRIU 4.2 layout (nr_pages in field 5)."""
    records = [pagemap_pb2.pagemap_head(pages_id=1).SerializeToString()]
    for vaddr, n in runs:
        raw = pagemap_pb2.pagemap_entry(
            vaddr=vaddr, nr_pages=0, flags=PE_PRESENT
        ).SerializeToString()
        records.append(raw + b"\x28" + bytes([n]))
    return criu_image(PAGEMAP, records)


def proc(
    pid: int,
    comm: str,
    *,
    ppid: int = 1,
    exe: str | None = None,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    fds: list[OpenFile] | None = None,
    maps: list[MemoryMap] | None = None,
) -> Process:
    return Process(
        pid=pid,
        ppid=ppid,
        comm=comm,
        exe=exe or f"/usr/bin/{comm}",
        cmdline=argv if argv is not None else [comm],
        state="alive",
        env=[EnvVar(name=k, value=v) for k, v in (env or {}).items()],
        open_files=fds or [],
        maps=maps or [],
    )


def fd(n: int, kind: str, path: str, file_id: int, flags: str | None = None) -> OpenFile:
    return OpenFile(fd=n, type=kind, path=path, file_id=file_id, flags=flags)


def tcp(
    file_id: int,
    holders: list[tuple[int, int]],
    *,
    remote: tuple[str, int] = ("10.0.0.9", 4444),
    state: str = "ESTABLISHED",
) -> Socket:
    return Socket(
        id=file_id,
        inode=file_id + 1000,
        pid=holders[0][0],
        held_by=[Holder(pid=p, fd=f) for p, f in holders],
        family="inet",
        type="stream",
        protocol="tcp",
        state=state,
        local_address="10.0.0.2",
        local_port=40000,
        remote_address=remote[0],
        remote_port=remote[1],
    )


def pipe(pipe_id: int, holders: list[tuple[int, int]]) -> Pipe:
    return Pipe(id=pipe_id, held_by=[Holder(pid=p, fd=f) for p, f in holders])


def rootfs(*entries: tuple[str, str, str], deleted: list[str] | None = None) -> Rootfs:
    """(path, type, mode) entries."""
    return Rootfs(
        present=True,
        changed=[RootfsEntry(path=p, type=t, mode=m, size_bytes=10) for p, t, m in entries],
        deleted=deleted or [],
    )


def report(**fields: Any) -> Report:
    from forensic_checkpoint.analysis.model.report import AnalyzedArchive

    info = AnalyzedArchive(
        path="x.tar", sha256="0" * 64, size_bytes=0, engine="cri-o", compression="none"
    )
    return Report(archive=info, **fields)
