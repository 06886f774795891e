"""One timeline from every time source a checkpoint really holds.

CRIU images carry no process start times (``core.proto`` start_time is commented out,
criu#2504), so the timeline is built from what is there, each with its own resolution:

* container created / checkpointed (config.dump, ns or s)
* CRI log lines (``<RFC 3339 ns> stdout|stderr F|P text``, ns)
* rootfs-diff entry mtimes (tar headers, s)
* ghost-file (deleted-but-open file) atime and mtime (``ghost_file_entry``, us)
* shell history timestamps recovered from memory ("#<epoch>", s)

Times are normalised to UTC ISO 8601 with the source's own fraction digits, so nothing
claims more precision than it has.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

from forensic_checkpoint.analysis.format.criu_images import try_decode
from forensic_checkpoint.analysis.model.findings import TimelineEvent
from forensic_checkpoint.analysis.model.report import Report

_RFC3339 = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$", re.ASCII
)
_CRI_LINE = re.compile(r"^(\S+) (stdout|stderr) ([FP]) ?(.*)$")
MAX_LOG_EVENTS = 5000
MAX_MESSAGE = 500


def normalize(stamp: str) -> tuple[str, int, str] | None:
    """(UTC ISO string, epoch ns, precision) of an RFC 3339 time, or None."""
    m = _RFC3339.match(stamp.strip())
    if m is None:
        return None
    base, fraction, zone = m.groups()
    try:
        when = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    when = when.astimezone(UTC)
    digits = fraction or ""
    ns = int(digits.ljust(9, "0")) if digits else 0
    precision = "ns" if len(digits) > 6 else "us" if len(digits) > 3 else "ms" if digits else "s"
    text = when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "") + "Z"
    return text, int(when.timestamp()) * 1_000_000_000 + ns, precision


def from_epoch(seconds: int, micros: int | None = None) -> tuple[str, int, str]:
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if micros is None:
        return text + "Z", seconds * 1_000_000_000, "s"
    return f"{text}.{micros:06d}Z", seconds * 1_000_000_000 + micros * 1000, "us"


def sort_key(event: TimelineEvent) -> int:
    parsed = normalize(event.time)
    return parsed[1] if parsed else 0


def _event(
    stamp: tuple[str, int, str] | None,
    desc: str,
    message: str,
    source: str,
    *,
    pid: int | None = None,
    path: str | None = None,
) -> TimelineEvent | None:
    if stamp is None:
        return None
    return TimelineEvent(
        time=stamp[0],
        timestamp_desc=desc,
        message=message[:MAX_MESSAGE],
        source=source,
        precision=stamp[2],
        pid=pid,
        path=path,
    )


def _container(report: Report) -> Iterator[TimelineEvent | None]:
    c = report.container
    name = c.name or c.id or "container"
    if c.created_at:
        yield _event(normalize(c.created_at), "Container Created", f"{name} created", "config.dump")
    if c.checkpointed_at:
        yield _event(
            normalize(c.checkpointed_at),
            "Container Checkpointed",
            f"{name} checkpointed ({report.archive.engine})",
            "config.dump",
        )


def _log(report: Report) -> Iterator[TimelineEvent | None]:
    if report.log is None:
        return
    lines = report.log.content.splitlines()
    if report.log.truncated and lines:
        lines = lines[1:]  # the tail starts mid-line
    for line in lines[-MAX_LOG_EVENTS:]:
        m = _CRI_LINE.match(line)
        if m:
            yield _event(
                normalize(m.group(1)), "Log Line", f"[{m.group(2)}] {m.group(4)}", report.log.member
            )


def _rootfs(report: Report) -> Iterator[TimelineEvent | None]:
    for e in report.rootfs.changed:
        if e.mtime:
            yield _event(
                normalize(e.mtime),
                "File Modified",
                f"{e.type} {e.path} written in the container (mode {e.mode}, {e.size_bytes} bytes)",
                "rootfs-diff",
                path=e.path,
            )


def _ghosts(report: Report, images: Mapping[str, bytes]) -> Iterator[TimelineEvent | None]:
    paths = {f.ghost.image: f.path for p in report.processes for f in p.open_files if f.ghost}
    holders = {f.ghost.image: p.pid for p in report.processes for f in p.open_files if f.ghost}
    for name, blob in images.items():
        if not name.startswith("checkpoint/ghost-file-"):
            continue
        image = try_decode("GHOST_FILE", blob, name.rsplit("/", 1)[-1], [])
        if image is None or not image.entries:
            continue
        entry = image.entries[0]
        path = paths.get(name, name)
        for field, desc in (("mtim", "File Modified"), ("atim", "File Accessed")):
            if entry.HasField(field):
                tv = getattr(entry, field)
                yield _event(
                    from_epoch(int(tv.tv_sec), int(tv.tv_usec)),
                    desc,
                    f"deleted-but-open file {path} ({desc.split()[1].lower()})",
                    "ghost-file",
                    path=path,
                    pid=holders.get(name),
                )


def _history(report: Report) -> Iterator[TimelineEvent | None]:
    for h in report.shell_history:
        if h.time:
            yield _event(
                normalize(h.time),
                "Command Typed",
                f"pid {h.pid} shell history: {h.command}",
                "bash-history",
                pid=h.pid,
            )


def build_timeline(report: Report, images: Mapping[str, bytes]) -> list[TimelineEvent]:
    events = [
        e
        for source in (
            _container(report),
            _log(report),
            _rootfs(report),
            _ghosts(report, images),
            _history(report),
        )
        for e in source
        if e is not None
    ]
    return sorted(events, key=sort_key)
