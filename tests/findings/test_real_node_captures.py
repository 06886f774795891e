"""Regressions on real captures from the real node (the findings corpus, `make corpus`): each
archive in tests/data/real-node is scored against the ground truth its scenario recorded from
/proc before the capture, exactly as `make bench-findings` scores the whole corpus.

- apt-get-at-start (benign): apt installed a package at start; its binary in /usr/bin is the
  package manager's (listed by the dpkg record written beside it), not a dropped binary, and
  the package database change is low.
- nginx-keepalive, postgres-session (benign): servers with workers and an open client
  (keep-alive; a psql session); nothing above low, and their setproctitle titles whole.
- revshell-socat-exec, revshell-python-pty (attacks): the shell's stdio is a pseudo-terminal
  whose master the socket holder keeps; both were missed before the pty was followed.
- api-server-from-pod (attack): curl with the pod's token against the API server is high (it was
  low, so the archive was not Suspicious)."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks import findings_corpus

pytestmark = pytest.mark.slow  # one analyzer process per archive, a second or two each

DATA = Path(__file__).resolve().parents[1] / "data" / "real-node"


def test_every_goal_holds_on_the_real_captures(capsys: pytest.CaptureFixture[str]) -> None:
    code = findings_corpus.main(["--dir", str(DATA)])
    out = capsys.readouterr().out
    assert code == 0, out
    for line in (
        "benign  apt-get-at-start           not suspicious  found 0/0",
        "benign  nginx-keepalive            not suspicious  found 0/0, 0 false positive(s)",
        "benign  postgres-session           not suspicious  found 0/0, 0 false positive(s)",
        "attack  revshell-socat-exec        Suspicious      found 1/1, 0 false positive(s)",
        "attack  revshell-python-pty        Suspicious      found 1/1, 0 false positive(s)",
        "attack  api-server-from-pod        Suspicious      found 2/2, 0 false positive(s)",
    ):
        assert line in out, out
    assert "goals: all met" in out


@pytest.mark.parametrize("name", ["nginx-keepalive", "postgres-session"])
def test_process_titles_are_the_kernels(name: str) -> None:
    """nginx and postgres rewrite their titles past the argv area (setproctitle); the analyzer
    follows the kernel's /proc/PID/cmdline rule, so each process's cmdline is what /proc showed
    just before the capture (the truth), e.g. postgres's backend with its client and state."""
    import json
    import subprocess
    import sys

    truth = json.loads((DATA / f"{name}.truth.json").read_text())
    out = subprocess.run(
        [sys.executable, "-m", "forensic_checkpoint", "analyze", str(DATA / f"{name}.tar.zst"),
         "-o", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    analysed = {p["pid"]: p.get("cmdline") for p in json.loads(out.stdout)["processes"]}
    expected = {p["pid"]: p["argv"] for p in truth["processes"]}
    assert analysed == expected
    titles = [" ".join(argv) for argv in expected.values()]
    assert any(t.endswith(" -g daemon off;") or ") idle" in t for t in titles), titles


def test_a_match_in_postgres_shared_buffers_names_every_backend() -> None:
    """postgres maps its shared buffers (a memfd) into every process: a match there is readable
    by all of them, and search says so (sharedWith; "also mapped by" in the text)."""
    import json
    import subprocess
    import sys

    archive = str(DATA / "postgres-session.tar.zst")
    truth = json.loads((DATA / "postgres-session.truth.json").read_text())
    pids = sorted(p["pid"] for p in truth["processes"])
    search = [sys.executable, "-m", "forensic_checkpoint", "search", archive, "pg_authid_rolname"]
    raw = subprocess.run([*search, "-o", "json"], capture_output=True, text=True, check=True)
    matches = json.loads(raw.stdout)["memory"]["searches"][0]["matches"]
    shared = [m for m in matches if "memfd" in m["mapping"]]
    assert shared and all(m["sharedWith"] == pids for m in shared), matches
    text = subprocess.run(search, capture_output=True, text=True, check=True).stdout
    others = ", ".join(str(p) for p in pids if p != shared[0]["pid"])
    assert f"also mapped by pid {others}]" in text, text
