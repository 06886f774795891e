"""Scoring findings against the corpus truth: what matches an expectation, what is a false
positive, per-rule counts, and the issue's goals."""

from __future__ import annotations

from typing import Any

from forensic_checkpoint_dev.corpus import scoring


def finding(rule: str, severity: str, pid: int | None = None, **evidence: Any) -> dict[str, Any]:
    return {"rule": rule, "severity": severity, "evidence": {"pid": pid, **evidence}}


ATTACK: dict[str, Any] = {
    "scenario": "rev",
    "kind": "attack",
    "expected": [
        {"rules": ["reverse-shell"], "pid": 7, "process": "bash: bash -i",
         "remote": "10.88.0.1:4441"},
        {"rules": ["drop-and-execute", "exec-from-temp"], "pid": 9, "process": "x",
         "path": "/dev/shm/x"},
        {"rules": ["memfd-exec"], "pid": 11, "process": "3", "path": "memfd:kworker"},
    ],
    "allowed": ["network-tool"],
}  # fmt: skip
BENIGN: dict[str, Any] = {"scenario": "web", "kind": "benign", "expected": [], "allowed": []}
SOCKET = "tcp 10.88.0.7:40000 -> 10.88.0.1:4441 ESTABLISHED"


def test_a_finding_matches_on_rule_pid_path_and_remote() -> None:
    rev = ATTACK["expected"][0]
    assert scoring.matches(finding("reverse-shell", "critical", 7, socket=SOCKET), rev)
    assert scoring.matches(finding("reverse-shell", "critical", 1, pids=[1, 7], socket=SOCKET), rev)
    assert not scoring.matches(finding("reverse-shell", "critical", 8, socket=SOCKET), rev)
    other = SOCKET.replace("4441", "4442")
    assert not scoring.matches(finding("reverse-shell", "critical", 7, socket=other), rev)
    assert not scoring.matches(finding("stdio-socket", "high", 7, socket=SOCKET), rev)
    memfd = ATTACK["expected"][2]
    assert scoring.matches(finding("memfd-exec", "critical", 11, path="/memfd:kworker (deleted)"),
                           memfd)  # fmt: skip
    assert not scoring.matches(finding("memfd-exec", "critical", 11, path="/tmp/x"), memfd)


def test_attack_archive_counts_found_missed_allowed_and_false_positives() -> None:
    found = [
        finding("reverse-shell", "critical", 7, socket=SOCKET),
        finding("exec-from-temp", "medium", 9, path="/dev/shm/x"),  # the alternative rule
        finding("network-tool", "medium", 8),  # allowed side effect
        finding("library-dir-write", "medium", path="/usr/lib/x.pyc"),  # false positive
        finding("etc-write", "info", path="/etc/hosts"),  # inventory: not counted
    ]
    s = scoring.score_archive(ATTACK, found)
    assert [e["pid"] for e in s.found] == [7, 9] and [e["pid"] for e in s.missed] == [11]
    assert s.credited == ["reverse-shell", "exec-from-temp"]
    assert [f["rule"] for f in s.allowed] == ["network-tool"]
    assert [f["rule"] for f in s.false_positives] == ["library-dir-write"]
    assert s.suspicious
    counts = scoring.per_rule([s])
    assert (counts["reverse-shell"].tp, counts["exec-from-temp"].tp) == (1, 1)
    assert (counts["memfd-exec"].fn, counts["library-dir-write"].fp) == (1, 1)
    assert "network-tool" not in counts and "etc-write" not in counts
    assert counts["library-dir-write"].precision == 0.0 and counts["memfd-exec"].recall == 0.0
    assert scoring.goal_failures([s]) == ["rev: missed memfd-exec on pid 11 path memfd:kworker"]


def test_benign_goals_allow_low_but_nothing_above_and_no_suspicion() -> None:
    quiet = scoring.score_archive(BENIGN, [finding("api-server-connection", "low", 3)])
    assert scoring.goal_failures([quiet]) == []
    assert [f["rule"] for f in quiet.false_positives] == ["api-server-connection"]
    pyc = [finding("library-dir-write", "medium", path=f"/usr/lib/{i}.pyc") for i in range(5)]
    loud = scoring.score_archive(BENIGN, [finding("stdio-socket", "high", 4), *pyc])
    assert scoring.goal_failures([loud]) == [
        "web: benign, high stdio-socket pid 4",
        "web: benign, 5 x library-dir-write, e.g. medium library-dir-write pid None /usr/lib/0.pyc",
        "web: benign archive is Suspicious",
    ]


def test_an_attack_without_high_findings_is_not_suspicious() -> None:
    s = scoring.score_archive(
        {**ATTACK, "expected": ATTACK["expected"][1:2]},
        [finding("exec-from-temp", "medium", 9, path="/dev/shm/x")],
    )
    assert scoring.goal_failures([s]) == ["rev: attack archive is not Suspicious"]


def test_render_prints_the_rule_table_archives_and_goals() -> None:
    pyc = [finding("library-dir-write", "medium", path=f"/usr/lib/{i}.pyc") for i in range(5)]
    loud = scoring.score_archive(BENIGN, pyc)
    s = scoring.score_archive(ATTACK, [finding("reverse-shell", "critical", 7, socket=SOCKET)])
    text = scoring.render([s, scoring.score_archive(BENIGN, [])])
    assert text.splitlines()[0].split() == ["rule", "TP", "FP", "FN", "precision", "recall"]
    assert "reverse-shell" in text and "MISS memfd-exec pid 11" in text
    assert "goals: 2 failure(s)" in text and "benign  web" in text
    assert "... and 2 more library-dir-write" in scoring.render([loud])
    clean = scoring.render([scoring.score_archive(BENIGN, [])])
    assert "goals: all met" in clean
