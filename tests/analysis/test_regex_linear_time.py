"""User regexes (``spec.analysis.regexes``, ``--search-regex``) run on RE2, linear in the memory
scanned. With a backtracking engine, ``(\\x00|\\x00\\x00)*\\x01`` over a process's zero pages
takes exponential time: one tenant's ForensicCheckpoint held both of an agent's analysis slots
for up to 900 s. A pattern RE2 cannot run in linear time (a backreference, a lookaround) is
refused with a message that says so, never run slowly."""

from __future__ import annotations

import time

import pytest
from tests.analysis.sample_data import sample_path

from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.cli.main import main

PATHOLOGICAL = r"(\x00|\x00\x00)*\x01"


def test_a_backtracking_bomb_scans_a_whole_sample_in_seconds() -> None:
    started = time.monotonic()
    report = analyze(
        sample_path("multi-proc"),
        AnalyzerOptions(regexes=[PATHOLOGICAL, r"st_[0-9a-f]{24}"], reveal=True),
    )
    assert time.monotonic() - started < 20
    bomb, token = report.memory.searches
    assert bomb.total_matches > 0  # zero runs ending in \x01 exist in real memory
    assert token.total_matches == 5  # and the ordinary regex beside it still works


@pytest.mark.parametrize("expr", [r"(a)\1", r"(?=secret)\w+", r"(?<!x)key"])
def test_a_pattern_without_linear_semantics_is_refused_with_the_reason(
    expr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["analyze", str(sample_path("multi-proc")), "--search-regex", expr])
    err = capsys.readouterr().err
    assert code != 0
    assert "RE2 syntax: no backreferences or lookaround" in err
    assert "Traceback" not in err
