"""CRIU's ``dump.log``: where a runtime's error names it, and the lines that explain a failure
(pure: the agent reads the file and passes its text in)."""

from __future__ import annotations

import re

#: The excerpt is stored with the ForensicCheckpoint's evidence and shown in its status: keep it
#: small enough for an object in etcd, large enough for the error and what led to it.
DEFAULT_EXCERPT_BYTES = 4096
_CONTEXT_LINES = 3
MAX_LINE_CHARS = 400

_LOG_PATH = re.compile(
    r"path= (?P<containerd>/\S+criu-dump\.log)|log file: (?P<crio>/\S+?dump\.log)(?=[\"\s\\]|$)"
)
_TIMESTAMP = re.compile(r"^\(\s*\d+\.\d+\)\s*")
_ERROR_LINE = re.compile(r"\bError \(")
#: Lines that look like errors but never cause a failure, with where that is known from.
_NOISE: tuple[re.Pattern[str], ...] = (
    # Every dump.log on a host without CAP_SYS_RESOURCE has it; the dump succeeds anyway.
    re.compile(r"rlimit: Can't setup RLIMIT_NOFILE for self"),
)
#: CRIU prints these when it reads a configuration file; they prove which one applied.
_GAP = "[...]"
_CONFIG_LINE = re.compile(r"Parsing config file |Would overwrite RPC settings with values from ")


def criu_log_path(body: str) -> str | None:
    """The host path of CRIU's log named in a runtime error (containerd or CRI-O), if any."""
    match = _LOG_PATH.search(body)
    if match is None:
        return None
    return match.group("containerd") or match.group("crio")


def first_error_line(log: str) -> str:
    for line in log.splitlines():
        if _ERROR_LINE.search(line) and not _is_noise(line):
            return _TIMESTAMP.sub("", line).strip()[:MAX_LINE_CHARS]
    return ""


def _is_noise(line: str) -> bool:
    return any(p.search(line) for p in _NOISE)


def criu_log_excerpt(
    log: str, focus: re.Pattern[str] | None = None, *, max_bytes: int = DEFAULT_EXCERPT_BYTES
) -> str:
    """The lines of a CRIU log that explain a failure, within ``max_bytes`` (UTF-8).

    In priority order: the line ``focus`` matched and the lines before it; every other ``Error``
    line (except known noise) and the line before it; the lines that show which configuration
    file CRIU read. Lines that repeat apart from their timestamp (CRIU retries every 100 ms) are
    kept once. Gaps are marked ``[...]``.
    """
    lines = log.splitlines()
    return _joined(lines, _within_budget(lines, _wanted(lines, focus), max_bytes))


def _wanted(lines: list[str], focus: re.Pattern[str] | None) -> list[list[int]]:
    """Line indexes by priority: the cause and its context, other errors, configuration."""
    wanted: list[list[int]] = [[], [], []]
    for index, line in enumerate(lines):
        # The matching line first, then its context: a tight cap drops context, not the cause.
        if focus is not None and focus.search(line):
            wanted[0].extend(range(index, max(0, index - _CONTEXT_LINES) - 1, -1))
        elif _ERROR_LINE.search(line) and not _is_noise(line):
            wanted[1].extend(range(index, max(0, index - 1) - 1, -1))
        elif _CONFIG_LINE.search(line):
            wanted[2].append(index)
    return wanted


def _within_budget(lines: list[str], wanted: list[list[int]], max_bytes: int) -> set[int]:
    """The wanted lines, in priority order, that fit ``max_bytes``; repeats kept once."""
    seen: set[str] = set()
    chosen: set[int] = set()
    budget = max_bytes
    for index in (index for group in wanted for index in group):
        text = lines[index][:MAX_LINE_CHARS]
        key = _TIMESTAMP.sub("", text)
        cost = len(text.encode()) + len(_GAP) + 2  # the line's newline, a gap marker's
        if index in chosen or key in seen or cost > budget:
            continue
        seen.add(key)
        chosen.add(index)
        budget -= cost
    return chosen


def _joined(lines: list[str], chosen: set[int]) -> str:
    """The chosen lines in log order, with ``[...]`` where lines were left out."""
    out: list[str] = []
    previous = -1
    for index in sorted(chosen):
        if previous >= 0 and index != previous + 1 and out[-1] != _GAP:
            out.append(_GAP)
        line = lines[index][:MAX_LINE_CHARS]
        if not (line == _GAP and out and out[-1] == _GAP):
            out.append(line)
        previous = index
    return "\n".join(out)
