"""The bounded analysis summary the agent returns with a Completed capture (pure).

The operator writes it into the ForensicCheckpoint's status as it is. An object in etcd must
stay small (the API server rejects ~1.5 MiB), and a status humans read with ``kubectl get -o
yaml`` should fit a screen or two. So every list is cut to its first N entries with the total
count beside it; the full report stays with the agent (``GET /v1/captures/{key}/report``).
Built where the report is (in the analysis process), so no report crosses the network on the
operator's reconcile path.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from forensic_checkpoint.analysis.model.report import Report, Socket
from forensic_checkpoint.api.forensiccheckpoint import (
    MAX_FINDINGS,
    MAX_HITS,
    MAX_PATHS,
    MAX_PROCESSES,
    MAX_SOCKETS,
    MAX_WARNINGS,
    AnalysisSummary,
    FileChangesSummary,
    FindingSummary,
    IdentitySummary,
    MemoryHit,
    ProcessSummary,
    SocketSummary,
)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _endpoint(address: str | None, port: int | None) -> str:
    if address is None and port is None:
        return ""
    host = address or "*"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return _clip(host if port is None else f"{host}:{port}", 128)


def _socket(sock: Socket) -> SocketSummary:
    return SocketSummary(
        pid=sock.pid,
        protocol=_clip(sock.protocol or sock.family, 16),
        local=_endpoint(sock.local_address, sock.local_port),
        remote=_endpoint(sock.remote_address, sock.remote_port),
        state=_clip(sock.state or "", 32),
    )


def _identity(report: Report, *, pod: str, namespace: str, container: str) -> IdentitySummary:
    info = report.container
    known = [
        (info.pod, pod),
        (info.namespace, namespace),
        (info.name, container),
    ]
    comparable = [(seen, wanted) for seen, wanted in known if seen]
    matches = all(seen == wanted for seen, wanted in comparable) if comparable else None
    return IdentitySummary(
        runtime=_clip(info.runtime or report.archive.engine, 63),
        pod_name=_clip(info.pod or "", 253),
        pod_namespace=_clip(info.namespace or "", 63),
        container_name=_clip(info.name or "", 253),
        image=_clip(info.image or "", 1024),
        checkpointed_at=_parse_time(info.checkpointed_at),
        matches_request=matches,
    )


def summarize(report: Report, *, pod: str, namespace: str, container: str) -> AnalysisSummary:
    """The status digest of ``report``, for the request of ``namespace/pod/container``."""
    processes = _processes(report)
    inet = [s for s in report.sockets if s.family in ("inet", "inet6")]
    listening = [s for s in inet if (s.state or "").upper() == "LISTEN"]
    established = [s for s in inet if (s.state or "").upper() == "ESTABLISHED"]
    hits = _memory_hits(report)
    stats = report.dump_stats.to_json_dict(exclude_none=True) if report.dump_stats else {}
    return AnalysisSummary(
        identity=_identity(report, pod=pod, namespace=namespace, container=container),
        process_count=len(processes),
        processes=processes[:MAX_PROCESSES],
        listening_count=len(listening),
        listening=[_socket(s) for s in listening[:MAX_SOCKETS]],
        established_count=len(established),
        established=[_socket(s) for s in established[:MAX_SOCKETS]],
        files=_files(report),
        memory_hit_count=len(hits),
        memory_hits=hits[:MAX_HITS],
        dump_stats={k: int(v) for k, v in stats.items()},
        warning_count=len(report.warnings),
        warnings=[_clip(w, 512) for w in report.warnings[:MAX_WARNINGS]],
        findings=dict(Counter(f.severity for f in report.findings)),
        top_findings=_top_findings(report),
    )


def _processes(report: Report) -> list[ProcessSummary]:
    return [
        ProcessSummary(
            pid=p.pid,
            ppid=p.ppid,
            comm=_clip(p.comm, 64),
            cmdline=_clip(" ".join(p.cmdline), 512),
        )
        for p in sorted(report.processes, key=lambda p: p.pid)
    ]


def _files(report: Report) -> FileChangesSummary:
    changed = [e.path for e in report.rootfs.changed if e.type != "dir"]
    deleted = list(report.rootfs.deleted)
    return FileChangesSummary(
        changed_count=len(changed),
        changed_paths=[_clip(p, 1024) for p in changed[:MAX_PATHS]],
        deleted_count=len(deleted),
        deleted_paths=[_clip(p, 1024) for p in deleted[:MAX_PATHS]],
    )


def _memory_hits(report: Report) -> list[MemoryHit]:
    return [
        MemoryHit(
            pid=match.pid,
            address=_clip(match.address, 20),
            pattern=_clip(search.pattern, 256),
            context=_clip(match.context, 256),
        )
        for search in report.memory.searches
        for match in search.matches
    ]


def _top_findings(report: Report) -> list[FindingSummary]:
    return [
        FindingSummary(
            rule=_clip(f.rule, 128),
            severity=f.severity,
            title=_clip(f.title, 256),
            pid=f.evidence.pid,
            id=_clip(f.id, 512),
        )
        for f in report.findings[:MAX_FINDINGS]
    ]
