"""``kubectl forensic report NAME``: the analysis summary in a ForensicCheckpoint's status, as
text (what an investigator reads first) or as the status JSON."""

from __future__ import annotations

import argparse
import json

from forensic_checkpoint.api.forensiccheckpoint import (
    AnalysisSummary,
    ContainerStatus,
    ForensicCheckpoint,
    Phase,
)
from forensic_checkpoint.cli.kubectl_forensic.context import get_checkpoint, namespace
from forensic_checkpoint.k8s.client import ApiClient

EXIT_FAILED = 1


def run_plugin(api: ApiClient, args: argparse.Namespace) -> int:
    fcp = get_checkpoint(api, namespace(args.namespace, args.kubeconfig), args.name)
    if args.output in ("json", "yaml"):
        status = fcp.status.to_kube() if fcp.status is not None else {}
        if args.output == "yaml":
            import yaml

            print(yaml.safe_dump(status, sort_keys=True, width=100), end="")
        else:
            print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(render_report(fcp), end="")
    return 0 if fcp.status is not None and fcp.status.phase == Phase.COMPLETED else EXIT_FAILED


def render_report(fcp: ForensicCheckpoint) -> str:
    """The status summary as text."""
    status = fcp.status
    phase = status.phase if status is not None else Phase.PENDING
    reason = f" ({status.reason})" if status is not None and status.reason else ""
    node = (status.node_name if status is not None else "") or "-"
    lines = [
        f"ForensicCheckpoint {fcp.metadata.get('namespace')}/{fcp.metadata.get('name')}: "
        f"{phase}{reason}",
        f"pod {fcp.spec.pod_name} on node {node}",
    ]
    for container in status.containers if status is not None else []:
        lines.extend(_container_lines(container))
        if container.summary is not None:
            lines.extend(_summary_lines(container.summary))
    return "\n".join(lines) + "\n"


def _container_lines(container: ContainerStatus) -> list[str]:
    lines = [f"\ncontainer {container.name}: {container.phase}"]
    if container.reason:
        lines.append(f"  reason: {container.reason}: {container.message}")
    if container.remediation:
        lines.append(f"  remediation: {container.remediation}")
    archive = container.archive
    if archive is not None:
        lines.append(f"  archive: {archive.path} ({archive.size_bytes} bytes)")
        lines.append(f"  sha256:  {archive.sha256}")
        if container.orphan_archive:
            lines.append(
                "  (written by the kubelet after the capture failed: kept on the node, "
                "not analysed)"
            )
    if container.frozen_time:
        # The container's tasks were frozen for the dump: probes and clients saw it hang.
        lines.append(f"  frozen:  {container.frozen_time} (the workload was paused)")
    return lines


def _summary_lines(summary: AnalysisSummary) -> list[str]:
    ident = summary.identity
    lines = [
        f"  image: {ident.image}  runtime: {ident.runtime}",
        f"  processes: {summary.process_count}",
    ]
    lines.extend(f"    {p.pid:>7} {p.comm}  {p.cmdline}" for p in summary.processes)
    lines.append(
        f"  sockets: {summary.listening_count} listening, {summary.established_count} established"
    )
    lines.extend(f"    {s.local} -> {s.remote}" for s in summary.established)
    files = summary.files
    lines.append(f"  files: {files.changed_count} changed, {files.deleted_count} deleted")
    lines.append(f"  memory matches: {summary.memory_hit_count}")
    lines.extend(
        f"    pid {h.pid} at {h.address} {h.pattern!r}: {h.context}" for h in summary.memory_hits
    )
    lines.extend(f"  finding [{f.severity}] {f.rule}: {f.title}" for f in summary.top_findings)
    return lines
