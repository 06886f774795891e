"""/proc/PID/cmdline by the kernel's rule (issue 16): a title rewritten with setproctitle that
runs past the argv area goes on into the environment area, up to the first NUL.

No committed archive holds a rewritten title. The edit does to counter.py's (pid 7) dumped
stack what setproctitle does in nginx or Python's setproctitle module once environ has been
copied away: the title is written from argv[0] over argv and on into the environment area,
and the rest of both areas is cleared with NULs. mm-7.img (the areas' bounds) is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.factories import edited_sample

from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.analysis.format.criu_images import try_decode
from forensic_checkpoint.analysis.memory import PageIndex, derive_page_size, parse_pagemap
from forensic_checkpoint.analysis.sections.cmdline import Reader, kernel_cmdline

SAMPLE, PID = "counter-blog-containerd", 7
TITLE = b"counter.py: serving 0.0.0.0:8088, 3 clients, last GET /healthz from 10.86.0.1(51234)"


def _set_title(members: dict[str, bytes]) -> None:
    mm = try_decode("MM", members[f"checkpoint/mm-{PID}.img"], "mm", []).entries[0]  # type: ignore[union-attr]
    start, end = int(mm.mm_arg_start), int(mm.mm_env_end)
    assert int(mm.mm_env_start) == int(mm.mm_arg_end)  # adjacent, as exec lays them out
    assert len(TITLE) > int(mm.mm_arg_end) - start  # the title overflows argv
    pagemap = parse_pagemap(members[f"checkpoint/pagemap-{PID}.img"])
    name = f"checkpoint/pages-{pagemap.pages_id}.img"
    pages = bytearray(members[name])
    index = PageIndex.build(pagemap, derive_page_size(len(pages), pagemap))
    run = next(r for r in index.runs if r.vaddr <= start and end <= r.end)
    at = run.file_offset + start - run.vaddr
    pages[at : at + end - start] = TITLE.ljust(end - start, b"\0")
    members[name] = bytes(pages)


def test_a_title_past_the_argv_area_is_read_on_into_the_environment(tmp_path: Path) -> None:
    report = analyze(edited_sample(SAMPLE, tmp_path, _set_title), AnalyzerOptions())
    proc = next(p for p in report.processes if p.pid == PID)
    assert proc.cmdline == [TITLE.decode()]


def _memory(data: bytes, base: int = 0x1000) -> Reader:
    def read(addr: int, size: int) -> bytes | None:
        lo = addr - base
        return data[lo : lo + size] if lo >= 0 and lo + size <= len(data) else None

    return read


@pytest.mark.parametrize(
    ("area", "bounds", "expected"),
    [
        # plain argv: exactly the argv area, the environment is not read
        (b"sleep\x0086400\x00HOME=/\x00", (0, 12, 12, 20), b"sleep\x0086400\x00"),
        # a title that overflows: on into the environment up to and including the first NUL
        (b"nginx: master process nginx -g daemon off;\x00\x00", (0, 12, 12, 44), None),
        # a title inside argv (last argv byte still non-NUL): up to its NUL
        (b"short title\x00xHOME=/\x00", (0, 13, 13, 20), b"short title\x00"),
        # the environment not adjacent to argv: argv only, even with its last byte rewritten
        (b"nginx: master process\x00", (0, 12, 13, 22), b"nginx: maste"),
        # exec not finished (env_end 0) or no argv: nothing
        (b"sleep\x00", (0, 6, 6, 0), b""),
    ],
)
def test_the_kernel_rule(area: bytes, bounds: tuple[int, ...], expected: bytes | None) -> None:
    base = 0x1000
    arg_start, arg_end, env_start, env_end = (base + b for b in bounds)
    if bounds[3] == 0:
        env_end = 0
    got = kernel_cmdline(
        _memory(area, base),
        arg_start=arg_start,
        arg_end=arg_end,
        env_start=env_start,
        env_end=env_end,
        page_size=4096,
    )
    assert got == (expected if expected is not None else area[: area.index(b"\0") + 1])


def test_a_title_is_at_most_one_page() -> None:
    area = b"x" * 9000 + b"\0"
    got = kernel_cmdline(
        _memory(area),
        arg_start=0x1000,
        arg_end=0x1000 + 100,
        env_start=0x1000 + 100,
        env_end=0x1000 + len(area),
        page_size=4096,
    )
    assert got == b"x" * 4096
