"""A scenario's ground truth, from its definition and the container's /proc before the capture.

Each expectation's process selector must match exactly one process, and its path and remote
must be what that process really has (its exe, an fd, a mapped file or an environment value;
an established TCP peer). Otherwise the scenario did not do what it says, and
:class:`TruthError` says how, so that no archive is ever kept with a wrong truth.
"""

from __future__ import annotations

from typing import Any

from forensic_checkpoint_dev.corpus.model import API, HOST, PORT, Expect, Scenario
from forensic_checkpoint_dev.corpus.procfs import Proc

#: the truth file's format; part of every scenario's definition hash
TRUTH_VERSION = "1"


class TruthError(Exception):
    """The container is not in the state the scenario describes (yet)."""


def substitute(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def placeholders(host: str, port: int | None, api: str | None) -> dict[str, str]:
    values = {HOST: host, PORT: str(port or "")}
    if api:
        values[API] = api
    return values


def _normal(path: str) -> str:
    """A memfd as the analyzer names it (``memfd:x``), whether /proc says ``/memfd:x (deleted)``."""
    path = path.removesuffix(" (deleted)")
    return path[1:] if path.startswith("/memfd:") else path


def _touches(p: Proc, path: str) -> bool:
    places = [p.exe, *p.fds.values(), *p.maps, *p.env.values()]
    return path in {_normal(x) for x in places}


def relays(p: Proc, procs: list[Proc]) -> list[Proc]:
    """The processes at the other end of ``p``'s standard streams: a pipe they share (the nc of
    a fifo relay) or the master of ``p``'s terminal (socat's or python's pty)."""
    stdio = [p.fds.get(fd, "") for fd in (0, 1, 2)]
    pipes = {t for t in stdio if t.startswith("pipe:")}
    ptys = {int(t[9:]) for t in stdio if t.startswith("/dev/pts/") and t[9:].isdigit()}
    return [
        q for q in procs if q is not p and (pipes & set(q.fds.values()) or ptys & q.pty_masters)
    ]


def resolve(expect: Expect, procs: list[Proc], values: dict[str, str]) -> dict[str, Any]:
    """One expectation as truth: the rule(s), the pid and the path/remote checked in /proc."""
    matching = [p for p in procs if expect.process.matches(p.comm, p.argv)]
    if len(matching) != 1:
        seen = "; ".join(f"{p.pid} {p.comm} {' '.join(p.argv)[:80]}" for p in procs)
        raise TruthError(
            f"{expect.rule}: {len(matching)} processes match {expect.process} (processes: {seen})"
        )
    p = matching[0]
    item: dict[str, Any] = {
        "rules": list(expect.rules),
        "pid": p.pid,
        "process": f"{p.comm}: {' '.join(p.argv)}",
    }
    if expect.path is not None:
        path = substitute(expect.path, values)
        if not _touches(p, path):
            raise TruthError(f"{expect.rule}: pid {p.pid} has no {path} (exe {p.exe})")
        item["path"] = path
    if expect.remote is not None:
        remote = substitute(expect.remote, values)
        holders = [
            q
            for q in [p, *relays(p, procs)]
            if any(t.remote == remote and t.state == "ESTABLISHED" for t in q.tcp)
        ]
        if not holders:
            raise TruthError(
                f"{expect.rule}: neither pid {p.pid} nor a relay of its stdio is connected to "
                f"{remote} ({p.tcp})"
            )
        item["remote"] = remote
        if holders[0] is not p:
            item["relayedBy"] = holders[0].pid
    return item


def build(
    scenario: Scenario, procs: list[Proc], values: dict[str, str], **facts: Any
) -> dict[str, Any]:
    """The truth file's content (``facts``: pod, container, definition hash, capture, ...)."""
    return {
        "truthVersion": TRUTH_VERSION,
        "scenario": scenario.name,
        "kind": scenario.kind,
        "summary": scenario.summary,
        **facts,
        "expected": [resolve(e, procs, values) for e in scenario.expect],
        "allowed": list(scenario.allow),
        "processes": [p.to_json() for p in procs],
        "definition": scenario.definition(),
    }
