"""A single-file HTML report, readable offline: no scripts, no fonts, no links to fetch.

Everything comes from the (redacted) report and is escaped; the page is one document with
inline CSS, so it can be mailed, attached to a ticket or opened from an evidence store.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from forensic_checkpoint.analysis.model.findings import SEVERITY_RANK, Finding
from forensic_checkpoint.analysis.model.process import Process
from forensic_checkpoint.analysis.model.report import Report

MAX_TIMELINE_ROWS = 2000

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;
color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#d8dde6;padding-bottom:4px}table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;vertical-align:top;padding:4px 8px;border-bottom:1px solid #eceff4}
th{background:#f4f6fa;font-weight:600}code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,
monospace;font-size:12.5px;word-break:break-all}.sev{display:inline-block;min-width:62px;
text-align:center;border-radius:3px;padding:1px 6px;color:#fff;font-size:12px;font-weight:600}
.critical{background:#7a0019}.high{background:#c62828}.medium{background:#e08a00}
.low{background:#5a7bb5}.info{background:#8a94a6}.muted{color:#5f6b7d}
.counts span{margin-right:14px}td.mono:first-child{white-space:nowrap}
ul.tree{list-style:none;padding-left:18px;margin:2px 0}
ul.tree li{margin:2px 0}li.flag>.proc{background:#fdecea;border-left:3px solid #c62828;
padding-left:4px}.kv td:first-child{width:170px;color:#5f6b7d}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _badge(severity: str) -> str:
    return f'<span class="sev {_e(severity)}">{_e(severity)}</span>'


def _evidence(f: Finding) -> str:
    ev = f.evidence
    parts = []
    for label, value in (
        ("pid", ev.pid),
        ("pids", ", ".join(map(str, ev.pids)) if ev.pids else None),
        ("fd", ", ".join(map(str, ev.fd)) if ev.fd else None),
        ("path", ev.path),
        ("socket", ev.socket),
        ("address", ev.address),
        ("mapping", ev.mapping),
        ("bytes", ev.bytes),
        ("sha256", ev.sha256),
    ):
        if value not in (None, ""):
            parts.append(f"<b>{label}</b> <code>{_e(value)}</code>")
    for key, value in ev.details.items():  # already redacted by the rules
        parts.append(f"<b>{_e(key)}</b> <code>{_e(value[:400])}</code>")
    return "<br>".join(parts)


def _findings(report: Report) -> str:
    if not report.findings:
        return '<p class="muted">No findings.</p>'
    rows = [
        f"<tr><td>{_badge(f.severity)}</td><td><b>{_e(f.title)}</b><br>"
        f'<span class="muted mono">{_e(f.id)}</span></td><td>{_evidence(f)}</td>'
        f'<td>{_e(", ".join(f.attack))}</td><td class="muted">{_e(f.source)}</td></tr>'
        for f in sorted(report.findings, key=lambda f: -SEVERITY_RANK[f.severity])
    ]
    return (
        "<table><tr><th>Severity</th><th>Finding</th><th>Evidence</th><th>ATT&amp;CK</th>"
        "<th>Rule source</th></tr>" + "".join(rows) + "</table>"
    )


def _tree(report: Report) -> str:
    flagged = {f.evidence.pid for f in report.findings if SEVERITY_RANK[f.severity] > 0}
    children: dict[int, list[Process]] = {}
    pids = {p.pid for p in report.processes}
    for p in report.processes:
        children.setdefault(p.ppid if p.ppid in pids else 0, []).append(p)

    def render(parent: int, depth: int) -> str:
        if depth > 64 or parent not in children:
            return ""
        items = []
        for p in sorted(children[parent], key=lambda p: p.pid):
            argv = " ".join(p.cmdline) or p.comm
            cls = ' class="flag"' if p.pid in flagged else ""
            items.append(
                f'<li{cls}><span class="proc"><b>{p.pid}</b> {_e(p.comm)} '
                f'<code>{_e(argv[:300])}</code> <span class="muted">{_e(p.exe)}</span></span>'
                f"{render(p.pid, depth + 1) if p.pid != parent else ''}</li>"
            )
        return '<ul class="tree">' + "".join(items) + "</ul>"

    return render(0, 0) or '<p class="muted">No processes.</p>'


def _timeline(report: Report) -> str:
    if not report.timeline:
        return '<p class="muted">No time sources.</p>'
    rows = [
        f'<tr><td class="mono">{_e(t.time)}</td><td>{_e(t.timestamp_desc)}</td>'
        f'<td class="muted">{_e(t.source)}</td><td class="mono">{_e(t.message)}</td></tr>'
        for t in report.timeline[:MAX_TIMELINE_ROWS]
    ]
    more = len(report.timeline) - MAX_TIMELINE_ROWS
    tail = f'<p class="muted">{more} more events in the JSON report.</p>' if more > 0 else ""
    return (
        "<table><tr><th>Time (UTC)</th><th>What</th><th>Source</th><th>Event</th></tr>"
        + "".join(rows)
        + "</table>"
        + tail
    )


def _sockets(report: Report) -> str:
    rows = []
    for s in report.sockets:
        holders = ", ".join(f"{h.pid}/fd{h.fd}" for h in s.held_by)
        queued = sum(q.size_bytes for q in (s.receive_queue, s.send_queue) if q)
        local = f"{s.local_address or ''}:{s.local_port or ''}".strip(":")
        remote = f"{s.remote_address or ''}:{s.remote_port or ''}".strip(":")
        rows.append(
            f"<tr><td>{_e(s.family)}/{_e(s.protocol or s.type)}</td><td>{_e(s.state)}</td>"
            f'<td class="mono">{_e(local)}</td><td class="mono">{_e(remote)}</td>'
            f"<td>{_e(holders)}</td><td>{queued}</td></tr>"
        )
    if not rows:
        return '<p class="muted">No sockets.</p>'
    return (
        "<table><tr><th>Socket</th><th>State</th><th>Local</th><th>Remote</th>"
        "<th>Held by (pid/fd)</th><th>Queued bytes</th></tr>" + "".join(rows) + "</table>"
    )


def _chains(report: Report) -> str:
    chains = report.connections.stdio_chains
    if not chains:
        return '<p class="muted">No process has its standard input/output on a remote peer.</p>'
    items = "".join(f'<li class="mono">{_e(c)}</li>' for c in chains)
    return f"<p><b>Standard input/output reaching a remote peer:</b></p><ul>{items}</ul>"


def _history(report: Report) -> str:
    if not report.shell_history:
        return '<p class="muted">No shell history in memory.</p>'
    rows = [
        f'<tr><td>{h.pid}</td><td class="mono">{_e(h.time)}</td>'
        f'<td class="mono">{_e(h.command)}</td></tr>'
        for h in report.shell_history
    ]
    return (
        "<table><tr><th>pid</th><th>Time (UTC)</th><th>Command</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _identity(report: Report) -> str:
    c = report.container
    identity = [
        ("Pod", f"{c.namespace or '-'}/{c.pod or '-'}"),
        ("Container", c.name or c.id),
        ("Image", c.image),
        ("Engine", report.archive.engine),
        ("Created", c.created_at),
        ("Checkpointed", c.checkpointed_at),
        ("Archive", report.archive.path),
        ("Archive sha256", report.archive.sha256),
        ("Redacted", "yes" if report.redacted else "no (--reveal)"),
    ]
    return "".join(f'<tr><td>{_e(k)}</td><td class="mono">{_e(v)}</td></tr>' for k, v in identity)


def _binaries(report: Report) -> str:
    foreign = [b for b in report.binaries if b.origin != "image"]
    if not foreign:
        return '<p class="muted">Every mapped binary comes from the image.</p>'
    return (
        "<table><tr><th>Binary</th><th>Origin</th><th>Build-id</th><th>sha256</th><th>pids</th></tr>"
        + "".join(
            f'<tr><td class="mono">{_e(b.path)}</td><td>{_e(b.origin)}</td>'
            f'<td class="mono">{_e(b.build_id)}</td><td class="mono">{_e(b.sha256)}</td>'
            f"<td>{_e(', '.join(map(str, b.pids)))}</td></tr>"
            for b in foreign
        )
        + "</table>"
    )


def to_html(report: Report) -> str:
    c = report.container
    counts: Counter[str] = Counter(f.severity for f in report.findings)
    count_html = "".join(
        f"<span>{_badge(s)} {counts.get(s, 0)}</span>"
        for s in sorted(SEVERITY_RANK, key=lambda s: -SEVERITY_RANK[s])
    )
    kv = _identity(report)
    binaries = _binaries(report)
    warnings = "".join(f"<li>{_e(w)}</li>" for w in report.warnings)
    title = f"Checkpoint report: {c.namespace or '-'}/{c.pod or '-'}/{c.name or c.id or '-'}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="muted">forensic-checkpoint offline analysis, report schema '
        f"{_e(report.schema_version)}</p>"
        f'<div class="counts">{count_html}</div>'
        f'<h2>Container</h2><table class="kv">{kv}</table>'
        f"<h2>Findings ({len(report.findings)})</h2>{_findings(report)}"
        f"<h2>Process tree</h2>{_tree(report)}"
        f"<h2>Sockets</h2>{_chains(report)}{_sockets(report)}"
        f"<h2>Shell history (from memory)</h2>{_history(report)}"
        f"<h2>Binaries not from the image</h2>{binaries}"
        f"<h2>Timeline ({len(report.timeline)} events)</h2>{_timeline(report)}"
        + (f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "")
        + "</body></html>\n"
    )
