"""The connection graph of a checkpoint: which process holds which pipe end and socket.

Pipe ends are joined by pipe id across processes, sockets by files.img id (their holders);
``stdio_chains`` are the paths the reverse-shell rules look for: a process's fd 0/1/2 on a
connected socket, or on a pipe whose other end a process holding a connected socket uses.
"""

from __future__ import annotations

from forensic_checkpoint.analysis.findings.connections import Graph, socket_text
from forensic_checkpoint.analysis.model.findings import ConnectionGraph, GraphEdge, GraphNode
from forensic_checkpoint.analysis.model.process import OpenFile
from forensic_checkpoint.analysis.model.report import Report


def _access(item: OpenFile) -> str:
    flags = item.flags or ""
    if flags.endswith("RDONLY"):
        return "read"
    if flags.endswith("WRONLY"):
        return "write"
    return "read-write"


def build_graph(report: Report) -> ConnectionGraph:
    graph = Graph(report)
    out = ConnectionGraph()
    for p in report.processes:
        out.nodes.append(GraphNode(id=f"pid:{p.pid}", kind="process", label=f"{p.pid} {p.comm}"))
    for pipe in report.pipes:
        queued = pipe.buffered.size_bytes if pipe.buffered else 0
        out.nodes.append(
            GraphNode(
                id=f"pipe:{pipe.id}", kind=pipe.type, label=f"pipe:[{pipe.id}]", queued_bytes=queued
            )
        )
        for h in pipe.held_by:
            item = graph.fd(h.pid, h.fd)
            access = _access(item) if item else "read-write"
            out.edges.append(
                GraphEdge(source=f"pid:{h.pid}", target=f"pipe:{pipe.id}", fd=h.fd, access=access)
            )
    for sock in report.sockets:
        queued = sum(q.size_bytes for q in (sock.receive_queue, sock.send_queue) if q)
        out.nodes.append(
            GraphNode(
                id=f"socket:{sock.id}", kind="socket", label=socket_text(sock), queued_bytes=queued
            )
        )
        for h in sock.held_by:
            out.edges.append(GraphEdge(source=f"pid:{h.pid}", target=f"socket:{sock.id}", fd=h.fd))
    for p in report.processes:
        link = graph.stdio_link(p.pid)
        if link:
            out.stdio_chains.append(
                f"pid {p.pid} ({p.comm}) {link['path']} -> {link['remote']}, "
                f"{link['bytes']} bytes queued"
            )
    return out
