"""Credential exposure inventory: where secrets are, never what they are.

Environment variables (every process and the OCI spec), rootfs-diff files and process and
shared memory are checked against the detectors in rules.yaml. A finding carries counts,
locations, length and sha256 of the value (so two analysts can tell whether they look at the
same secret), and for JWTs the header algorithm and the subject and issuer claims, which
identify the token without enabling it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from forensic_checkpoint.analysis.findings.sources import OVERLAP
from forensic_checkpoint.analysis.model.findings import Evidence, Finding, as_severity
from forensic_checkpoint.analysis.model.process import EnvVar
from forensic_checkpoint.analysis.model.report import Report

JWT_RE = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


@dataclass(frozen=True)
class Hit:
    detector: Mapping[str, Any]
    value: bytes
    where: str
    pid: int | None = None
    path: str | None = None
    variable: str | None = None
    #: virtual address (process memory) or offset (shared memory object)
    address: int | None = None
    #: a shared memory object's: every process that maps it or holds it open
    readers: tuple[int, ...] = ()


def redacted(value: bytes, shown: int = 0) -> str:
    return f"{value[:shown].decode('ascii', 'replace')}...<redacted {len(value) - shown} chars>"


def _b64json(part: bytes) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def jwt_parts(token: bytes) -> tuple[dict[str, Any], dict[str, Any]] | None:
    pieces = token.split(b".")
    if len(pieces) != 3:
        return None
    header, payload = _b64json(pieces[0]), _b64json(pieces[1])
    if header is None or payload is None or "alg" not in header:
        return None
    return header, payload


def mask_secrets(text: str, detectors: list[Mapping[str, Any]]) -> str:
    """``text`` with every JWT and every detector match replaced by ``<redacted N chars>``:
    for text the findings copy into the report (history commands, log lines, argv)."""
    raw = text.encode("utf-8", "surrogateescape")
    spans = [m.span() for m in JWT_RE.finditer(raw)]
    for det in detectors:
        if det.get("kind") == "regex":
            spans += [m.span() for m in re.finditer(str(det["pattern"]).encode(), raw)]
    if not spans:
        return text
    out, at = [], 0
    for start, end in sorted(spans):
        if start < at:
            continue
        out.append(raw[at:start])
        out.append(f"<redacted {end - start} chars>".encode())
        at = end
    out.append(raw[at:])
    return b"".join(out).decode("utf-8", "surrogateescape")


def scan_value(
    data: bytes, detectors: list[Mapping[str, Any]]
) -> Iterator[tuple[Mapping[str, Any], bytes]]:
    """(detector, secret bytes) for each secret in ``data``; a JWT matches the first JWT
    detector whose ``claims`` regex matches its payload."""
    for m in JWT_RE.finditer(data):
        parts = jwt_parts(m.group(0))
        if parts is None:
            continue
        claims = json.dumps(parts[1])
        for det in detectors:
            if det["kind"] == "jwt" and re.search(str(det.get("claims", "")), claims):
                yield det, m.group(0)
                break
    for det in detectors:
        if det["kind"] == "regex":
            for m in re.finditer(str(det["pattern"]).encode(), data):
                yield det, m.group(0)


class MemoryCredentials:
    """Secrets in memory: one yara-x pass with the detectors' ``anchor`` strings finds the
    candidates, then the detector itself is applied at each candidate (so memory is read
    once and the Python regexes only see a small window)."""

    WINDOW = 20_000  # < sources.OVERLAP
    #: candidates examined per analysis (a heap full of tokens is one finding anyway)
    MAX_CANDIDATES = 20_000

    def __init__(self, config: Mapping[str, Any]) -> None:
        from forensic_checkpoint.analysis.findings.yara_scan import compile_rules_from_source
        from forensic_checkpoint.analysis.memory.yara_engine import new_scanner

        self.detectors = list(config.get("detectors") or [])
        anchors = sorted({str(d["anchor"]) for d in self.detectors if d.get("anchor")})
        source = "\n".join(
            f"rule anchor_{i} {{ strings: $a = {a} condition: $a }}" for i, a in enumerate(anchors)
        )
        self._scanner = new_scanner(compile_rules_from_source(source, "credentials"))
        self.hits: list[Hit] = []
        self.candidates = 0

    def scan(
        self,
        data: bytes,
        *,
        base: int,
        pid: int | None,
        where: str,
        last: bool = True,
        readers: tuple[int, ...] = (),
    ) -> None:
        """``last``: no overlapping piece follows. Otherwise candidates in the final
        ``OVERLAP`` bytes belong to the next piece, where their whole window is (the
        window is shorter than the overlap), so each candidate is examined once."""
        if self.candidates >= self.MAX_CANDIDATES:
            return
        owned = len(data) if last else len(data) - OVERLAP
        for rule in self._scanner.scan(data).matching_rules:
            for pattern in rule.patterns:
                for m in pattern.matches:
                    if m.offset >= owned:
                        continue
                    self.candidates += 1
                    window = data[m.offset : m.offset + self.WINDOW]
                    for det, value in scan_value(window, self.detectors):
                        if window.startswith(value):
                            self.hits.append(
                                Hit(
                                    det,
                                    value,
                                    where,
                                    pid=pid,
                                    address=base + m.offset,
                                    readers=readers,
                                )
                            )
                            break


def find_credentials(
    report: Report,
    files: Mapping[str, bytes],
    config: Mapping[str, Any],
    memory_hits: Iterable[Hit] = (),
) -> list[Finding]:
    detectors = list(config.get("detectors") or [])
    name_re = re.compile(str(config.get("secret_env_name", "(?!)")))
    env_rule = dict(config.get("env_name") or {})
    hits: list[Hit] = []
    # each process's environment (read from memory), then the OCI spec's (no pid)
    environments: list[tuple[int | None, list[EnvVar]]] = [(p.pid, p.env) for p in report.processes]
    environments.append((None, report.container.spec_env))
    for pid, env in environments:
        for var in env:
            hits.extend(
                _env_hits(
                    var.name,
                    var.value,
                    detectors=detectors,
                    name_re=name_re,
                    env_rule=env_rule,
                    pid=pid,
                )
            )
    for path, blob in files.items():
        for det, value in scan_value(blob, detectors):
            hits.append(Hit(det, value, "file", path=path))
    hits.extend(memory_hits)
    return _group(hits)


def _env_hits(
    name: str,
    value: str,
    *,
    detectors: list[Mapping[str, Any]],
    name_re: re.Pattern[str],
    env_rule: Mapping[str, Any],
    pid: int | None,
) -> Iterator[Hit]:
    raw = value.encode()
    where = "environment" if pid is not None else "spec.dump environment"
    found = False
    for det, secret in scan_value(raw, detectors):
        found = True
        yield Hit(det, secret, where, pid=pid, variable=name)
    if not found and value and env_rule and name_re.search(name):
        yield Hit(env_rule, raw, where, pid=pid, variable=name)


def _group(hits: list[Hit]) -> list[Finding]:
    """One finding per (detector, secret value), however often the secret was seen."""
    groups: dict[tuple[str, str], list[Hit]] = {}
    for hit in hits:
        sha = hashlib.sha256(hit.value).hexdigest()
        groups.setdefault((str(hit.detector["id"]), sha), []).append(hit)
    return [_finding(rule, sha, members) for (rule, sha), members in groups.items()]


def _finding(rule: str, sha: str, members: list[Hit]) -> Finding:
    first = members[0]
    det = first.detector
    pids = sorted(
        {h.pid for h in members if h.pid is not None} | {r for h in members for r in h.readers}
    )
    paths = sorted({h.path for h in members if h.path})
    return Finding(
        id=f"{rule}:sha256={sha[:16]}",
        rule=rule,
        severity=as_severity(det["severity"]) or "high",  # checked by parse_rules
        title=str(det["title"]),
        source=str(det["source"]),
        attack=[str(a) for a in det.get("attack") or []],
        evidence=Evidence(
            pid=pids[0] if pids else None,
            pids=pids,
            path=paths[0] if paths else None,
            sha256=sha,
            bytes=len(first.value),
            details=_details(members),
        ),
    )


def _details(members: list[Hit]) -> dict[str, str]:
    """The masked value, where it was seen, and a JWT's algorithm and subject."""
    first = members[0]
    det = first.detector
    in_memory = Counter(
        h.pid if h.pid is not None else h.where for h in members if h.address is not None
    )
    details = {
        "length": str(len(first.value)),
        "value": redacted(first.value, 12 if det.get("kind") == "jwt" else 0),
        "occurrences": str(len(members)),
        "locations": "; ".join(sorted({_where(h) for h in members}))[:1000],
    }
    if in_memory:
        details["in_memory"] = ", ".join(
            f"pid {k}: {n}" for k, n in sorted(in_memory.items(), key=str)
        )
    variables = sorted({h.variable for h in members if h.variable})
    if variables:
        details["variable"] = ", ".join(variables)
    parts = jwt_parts(first.value) if det.get("kind") == "jwt" else None
    if parts is not None:
        header, payload = parts
        details["alg"] = str(header.get("alg"))
        for claim in ("sub", "iss"):
            if claim in payload:
                details[claim] = str(payload[claim])
    return details


def _where(hit: Hit) -> str:
    if hit.address is not None and hit.pid is None:
        readers = ", ".join(map(str, hit.readers)) or "no process"
        return f"{hit.where} offset 0x{hit.address:x} (shared: pids {readers} can read it)"
    if hit.address is not None:
        return f"pid {hit.pid} memory 0x{hit.address:x}"
    if hit.pid is not None:
        return f"pid {hit.pid} {hit.where} {hit.variable}"
    if hit.path:
        return f"rootfs-diff {hit.path}"
    return f"{hit.where} {hit.variable}"
