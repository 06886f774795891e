"""Timesketch JSONL: one event per line with ``message``, ``datetime``, ``timestamp_desc``.

Timesketch's importer aborts the whole upload on one bad line, and a line with only a
``timestamp`` gets a naive local-time datetime (findings-research.md 0.8), so every line
carries an explicit UTC ``datetime`` and is validated before it is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from forensic_checkpoint.analysis.model.findings import TimelineEvent
from forensic_checkpoint.analysis.model.report import Report
from forensic_checkpoint.analysis.sections.timeline import normalize
from forensic_checkpoint.errors import ReportExportError

REQUIRED = ("message", "datetime", "timestamp_desc")


def event_line(event: TimelineEvent, report: Report) -> dict[str, Any]:
    parsed = normalize(event.time)
    if parsed is None:
        raise ReportExportError(f"timeline event has no valid time: {event.time!r}")
    line: dict[str, Any] = {
        "message": event.message,
        "datetime": parsed[0],
        "timestamp": parsed[1] // 1000,  # Timesketch's microseconds
        "timestamp_desc": event.timestamp_desc,
        "data_type": f"forensic_checkpoint:{event.source}",
        "source": event.source,
        "precision": event.precision,
        "container": report.container.name or report.container.id or "",
        "pod": report.container.pod or "",
        "namespace": report.container.namespace or "",
        "archive_sha256": report.archive.sha256,
    }
    if event.pid is not None:
        line["pid"] = event.pid
    if event.path:
        line["path"] = event.path
    return line


def validate_line(text: str) -> None:
    """Raise ReportExportError unless ``text`` is one JSON object Timesketch will import."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ReportExportError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ReportExportError("a line must be a JSON object")
    for key in REQUIRED:
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ReportExportError(f"missing or empty {key!r}")
    stamp = doc["datetime"].replace("Z", "+00:00")
    head, _, rest = stamp.partition(".")
    if rest:  # fromisoformat takes at most 6 fraction digits before 3.11's full support
        digits = rest.split("+")[0].split("-")[0]
        stamp = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise ReportExportError(f"datetime {doc['datetime']!r} is not ISO 8601") from exc
    if parsed.tzinfo is None:
        raise ReportExportError(
            "datetime has no time zone (Timesketch would read it as local time)"
        )


def to_jsonl(report: Report, events: Iterable[TimelineEvent] | None = None) -> str:
    lines = []
    for event in report.timeline if events is None else events:
        text = json.dumps(event_line(event, report), ensure_ascii=False, sort_keys=True)
        validate_line(text)
        lines.append(text)
    for finding in report.findings:
        # findings have no time of their own; they are pinned to the checkpoint time
        when = report.container.checkpointed_at
        if not when or normalize(when) is None:
            continue
        event = TimelineEvent(
            time=when,
            timestamp_desc="Finding",
            message=f"[{finding.severity}] {finding.title} ({finding.id})",
            source="findings",
            pid=finding.evidence.pid,
            path=finding.evidence.path,
        )
        line = event_line(event, report) | {
            "finding_id": finding.id,
            "severity": finding.severity,
            "attack": ",".join(finding.attack),
        }
        text = json.dumps(line, ensure_ascii=False, sort_keys=True)
        validate_line(text)
        lines.append(text)
    return "".join(line + "\n" for line in lines)
