"""Shell history recovered from bash's heap (Volatility ``linux.bash``, adapted to CRIU).

readline keeps one ``HIST_ENTRY {char *line; char *timestamp; histdata_t data}`` per command;
bash stamps every entry with ``"#<unix seconds>"`` whether or not HISTTIMEFORMAT is set, and
the list survives ``HISTFILE=/dev/null`` and ``history -c`` of the *file*. So: find the
``#<10+ digits>\\0`` strings in the heap, find 8-byte pointers to them, and accept
``pointer - 8`` as an entry when its ``line`` pointer leads to a readable string. Entries are
ordered by readline's ``the_history`` array (consecutive pointers to the entries) when it is
found, else by timestamp.
"""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime

from forensic_checkpoint.analysis.memory import ProcessMemory
from forensic_checkpoint.analysis.model.findings import HistoryEntry
from forensic_checkpoint.errors import ImageError

_STAMP = re.compile(rb"#(\d{10,12})\x00")
MAX_COMMAND = 4096


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def recover_history(
    pid: int, segments: list[tuple[int, bytes]], memory: ProcessMemory
) -> list[HistoryEntry]:
    """Entries found in the heap, given as its dumped ``(vaddr, bytes)`` segments (untouched
    heap pages are not in a checkpoint); ``memory`` reads the strings entries point to."""
    stamps: dict[int, int] = {}
    for base, data in segments:
        stamps.update({base + m.start(): int(m.group(1)) for m in _STAMP.finditer(data)})
    if not stamps:
        return []
    pointers = _pointers(segments)
    entries: dict[int, tuple[int, str]] = {}  # entry address -> (epoch, command)
    for stamp_addr, epoch in stamps.items():
        for where in pointers.get(stamp_addr, []):
            text = _command(memory, where - 8)
            if text is not None:
                entries[where - 8] = (epoch, text)
    order = _array_order(entries, pointers)
    ranked = sorted(entries, key=lambda e: (order.get(e, 1 << 62), entries[e][0], e))
    return [
        HistoryEntry(pid=pid, command=entries[e][1], time=_iso(entries[e][0]), address=f"0x{e:x}")
        for e in ranked
    ]


def _pointers(segments: list[tuple[int, bytes]]) -> dict[int, list[int]]:
    """Heap address -> where the aligned 8-byte pointers to it are, within the heap."""
    low = min(base for base, _ in segments)
    high = max(base + len(data) for base, data in segments)
    pointers: dict[int, list[int]] = {}
    for base, data in segments:
        skip = -base % 8
        usable = (len(data) - skip) // 8 * 8
        for i, (value,) in enumerate(struct.iter_unpack("<Q", data[skip : skip + usable])):
            if low <= value < high:
                pointers.setdefault(value, []).append(base + skip + i * 8)
    return pointers


def _command(memory: ProcessMemory, entry: int) -> str | None:
    """The command line of the HIST_ENTRY at ``entry`` (its first field points to it), or None
    when it is not in the dump or not printable text."""
    raw = memory.try_read(entry, 8)
    if raw is None:
        return None
    (line_ptr,) = struct.unpack("<Q", raw)
    try:
        line = memory.read_cstring(line_ptr, MAX_COMMAND)
    except ImageError:  # the line is not in the dump: not an entry
        return None
    text = line.decode("utf-8", "replace")
    return text if text and text.isprintable() else None


def _array_order(
    entries: dict[int, tuple[int, str]], pointers: dict[int, list[int]]
) -> dict[int, int]:
    """Position of each entry in the longest run of consecutive pointers to entries
    (readline's ``the_history``)."""
    slots = {where: e for e in entries for where in pointers.get(e, [])}
    best: list[int] = []
    for where in sorted(slots):
        if where - 8 in slots:
            continue  # not the start of a run
        run = []
        at = where
        while at in slots:
            run.append(slots[at])
            at += 8
        if len(run) > len(best):
            best = run
    return {e: i for i, e in enumerate(best)} if len(best) > 1 else {}
