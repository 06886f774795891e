"""A process's command line as the kernel shows it in /proc/PID/cmdline, from the mm fields
CRIU saves (mm-<pid>.img: mm_arg_start/arg_end/env_start/env_end) and the dumped pages.

The rule is the kernel's, fs/proc/base.c get_mm_cmdline() and get_mm_proctitle() as of Linux
5.2 ("proc: allow setproctitle() to overflow into the environment area only if adjacent"),
unchanged in substance through 6.x:

* nothing while ``env_end`` is 0 (the process has not finished exec) or the argv area is
  empty;
* the environment area counts only when it starts right where argv ends
  (``env_start == arg_end``, ``env_end >= env_start``); else it is taken as empty;
* when the last byte of the argv area is not NUL, the program has rewritten its title
  (setproctitle: nginx, postgres, redis): the title is read from ``arg_start``, at most one
  page and at most up to ``env_end``, up to and including the first NUL. So a title longer
  than the original argv goes on into the environment area;
* otherwise exactly ``[arg_start, arg_end)``.
"""

from __future__ import annotations

from collections.abc import Callable

#: (address, size) -> the bytes there, or None where any of them is not in the dump
Reader = Callable[[int, int], bytes | None]


def kernel_cmdline(
    read: Reader,
    *,
    arg_start: int,
    arg_end: int,
    env_start: int,
    env_end: int,
    page_size: int,
) -> bytes | None:
    """The bytes /proc/PID/cmdline gave; None when the memory they come from is not dumped."""
    if env_end == 0 or arg_start >= arg_end:
        return b""
    if env_start != arg_end or env_end < env_start:
        env_start = env_end = arg_end
    last = read(arg_end - 1, 1)
    if last is None:
        return None
    if last == b"\0":
        return read(arg_start, arg_end - arg_start)
    size = min(page_size, env_end - arg_start)
    # access_remote_vm reads what is mapped; a dump holds the whole stack page or none of it
    title = read(arg_start, size)
    if title is None:
        title = read(arg_start, arg_end - arg_start)
        if title is None:
            return None
    nul = title.find(b"\0")
    return title if nul < 0 else title[: nul + 1]
