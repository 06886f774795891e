"""A STIX 2.1 bundle of the findings, for threat-intel platforms (OpenCTI, MISP, TAXII).

Shape: the tool's ``identity``; per finding an ``observed-data`` over the cyber observables
it names (``process``, ``file`` with SHA-256, ``ipv4-addr`` + ``network-traffic``); one
``attack-pattern`` per ATT&CK technique (external id + URL) and a ``sighting`` of it per
finding; a ``report`` that references everything. Observable ids are UUIDv5 over their
identifying properties (STIX 2.1 section 2.9) so that the same file or address in two
checkpoints gets the same id; ``process`` (which has no such properties) and the domain
objects are UUIDv4, as the specification requires and prefers.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from forensic_checkpoint.analysis.model.findings import Finding
from forensic_checkpoint.analysis.model.report import Report
from forensic_checkpoint.analysis.sections.timeline import normalize

#: the namespace STIX 2.1 defines for deterministic cyber-observable ids
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
SPEC = "2.1"


def _stix_time(iso: str | None) -> str:
    parsed = normalize(iso) if iso else None
    if parsed is None:
        when = datetime.now(tz=UTC)
    else:
        when = datetime.fromtimestamp(parsed[1] // 1_000_000_000, tz=UTC).replace(
            microsecond=(parsed[1] // 1000) % 1_000_000
        )
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _sco(kind: str, **props: Any) -> dict[str, Any]:
    key = json.dumps(props, sort_keys=True, separators=(",", ":"))
    return {
        "type": kind,
        "spec_version": SPEC,
        "id": f"{kind}--{uuid.uuid5(SCO_NAMESPACE, key)}",
    } | props


def _sdo(kind: str, created: str, identity: str | None, **props: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": kind,
        "spec_version": SPEC,
        "id": f"{kind}--{uuid.uuid4()}",
        "created": created,
        "modified": created,
    }
    if identity:
        obj["created_by_ref"] = identity
    return obj | props


def _technique_url(technique: str) -> str:
    return "https://attack.mitre.org/techniques/" + technique.replace(".", "/") + "/"


def _observables(
    finding: Finding, report: Report, processes: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    ev = finding.evidence
    out: list[dict[str, Any]] = []
    if ev.pid is not None:
        if ev.pid not in processes:
            # process has no id-contributing properties: STIX requires a UUIDv4 id
            proc = report.process(ev.pid)
            obj: dict[str, Any] = {
                "type": "process",
                "spec_version": SPEC,
                "id": f"process--{uuid.uuid4()}",
                "pid": ev.pid,
            }
            if proc is not None and proc.cmdline:
                obj["command_line"] = " ".join(proc.cmdline)[:1000]
            processes[ev.pid] = obj
        out.append(processes[ev.pid])
    if ev.path and ev.path.startswith("/"):
        name = ev.path.rsplit("/", 1)[-1] or ev.path
        file_props: dict[str, Any] = {"name": name}
        if ev.sha256:
            file_props["hashes"] = {"SHA-256": ev.sha256}
        out.append(_sco("file", **file_props))
    if ev.socket:
        # "tcp 10.0.0.2:5811 -> 10.0.0.1:4444 ESTABLISHED"
        parts = ev.socket.split()
        if len(parts) >= 4 and parts[2] == "->":
            src_ip, _, src_port = parts[1].rpartition(":")
            dst_ip, _, dst_port = parts[3].rpartition(":")
            kind = "ipv6-addr" if ":" in src_ip else "ipv4-addr"
            src, dst = _sco(kind, value=src_ip), _sco(kind, value=dst_ip)
            traffic = _sco(
                "network-traffic",
                src_ref=src["id"],
                dst_ref=dst["id"],
                src_port=int(src_port),
                dst_port=int(dst_port),
                protocols=["ipv6" if kind == "ipv6-addr" else "ipv4", parts[0]],
            )
            out += [src, dst, traffic]
    return out


def to_bundle(report: Report) -> dict[str, Any]:
    when = _stix_time(report.container.checkpointed_at)
    now = _stix_time(datetime.now(tz=UTC).isoformat())
    identity = _sdo(
        "identity",
        now,
        None,
        name="forensic-checkpoint",
        identity_class="system",
        description="Offline analyzer of Kubernetes forensic container checkpoints",
    )
    objects: list[dict[str, Any]] = [identity]
    seen: set[str] = set()
    patterns: dict[str, dict[str, Any]] = {}
    refs: list[str] = []
    processes: dict[int, dict[str, Any]] = {}
    for finding in report.findings:
        observables = _observables(finding, report, processes)
        objects += [o for o in observables if o["id"] not in seen]
        seen |= {o["id"] for o in observables}
        object_refs = [o["id"] for o in observables]
        observed = None
        if object_refs:
            observed = _sdo(
                "observed-data",
                now,
                identity["id"],
                first_observed=when,
                last_observed=when,
                number_observed=1,
                object_refs=object_refs,
                labels=[f"severity:{finding.severity}", f"rule:{finding.rule}"],
            )
            objects.append(observed)
            refs.append(observed["id"])
        for technique in finding.attack:
            pattern = patterns.get(technique)
            if pattern is None:
                pattern = patterns[technique] = _sdo(
                    "attack-pattern",
                    now,
                    identity["id"],
                    name=technique,
                    external_references=[
                        {
                            "source_name": "mitre-attack",
                            "external_id": technique,
                            "url": _technique_url(technique),
                        }
                    ],
                )
                objects.append(pattern)
                refs.append(pattern["id"])
            sighting = _sdo(
                "sighting",
                now,
                identity["id"],
                sighting_of_ref=pattern["id"],
                first_seen=when,
                last_seen=when,
                count=1,
                description=f"[{finding.severity}] {finding.title} ({finding.id}); rule source: "
                f"{finding.source}"[:2000],
                where_sighted_refs=[identity["id"]],
            )
            if observed is not None:
                sighting["observed_data_refs"] = [observed["id"]]
            objects.append(sighting)
            refs.append(sighting["id"])
    c = report.container
    summary = _sdo(
        "report",
        now,
        identity["id"],
        name=f"Checkpoint findings: {c.namespace or '-'}/{c.pod or '-'}/{c.name or c.id or '-'}",
        description=f"{len(report.findings)} findings in archive sha256 {report.archive.sha256}",
        published=now,
        report_types=["observed-data"],
        object_refs=[identity["id"], *refs] if refs else [identity["id"]],
    )
    objects.append(summary)
    return {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}


def to_json(report: Report) -> str:
    return json.dumps(to_bundle(report), indent=2, ensure_ascii=False) + "\n"
