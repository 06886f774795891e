"""`forensic-checkpoint search` on the real samples, through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.analysis.sample_data import revealed, sample_path, truth

from forensic_checkpoint.analysis.model.report import REDACTED
from forensic_checkpoint.cli.main import main


def _search(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["search", *argv, "-o", "json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_finds_every_truth_string(sample: str, capsys: pytest.CaptureFixture[str]) -> None:
    values = [m["value"] for m in truth(sample)["memory_strings"]]
    out = _search(capsys, str(sample_path(sample)), *values, "--reveal")
    by_pattern = {s["pattern"]: s for s in out["memory"]["searches"]}
    for want in truth(sample)["memory_strings"]:
        search = by_pattern[want["value"]]
        found = {(m["pid"], m["address"]) for m in search["matches"]}
        expected = {(o["pid"], o["vaddr"]) for o in want.get("occurrence_list", [])}
        assert found == expected, want["value"]
        assert all(want["value"] in m["context"] and m["mapping"] for m in search["matches"])
    # The same searches, field for field, as analyze's report.
    analyzed = revealed(sample).to_json_dict()["memory"]["searches"]
    assert out["memory"]["searches"] == analyzed


def test_regex_masked_unless_revealed(capsys: pytest.CaptureFixture[str]) -> None:
    archive = str(sample_path("multi-proc"))
    regex = "st_[0-9a-f]{24}"
    masked = _search(capsys, archive, "--regex", regex)["memory"]["searches"][0]
    shown = _search(capsys, archive, "--regex", regex, "--reveal")["memory"]["searches"][0]
    assert masked["kind"] == "regex" and masked["totalMatches"] == 5
    assert {(m["match"], m["context"]) for m in masked["matches"]} == {(REDACTED, REDACTED)}
    assert {m["match"] for m in shown["matches"]} == {"st_a05909b0369acc80c6bea84a"}
    assert [m["address"] for m in masked["matches"]] == [m["address"] for m in shown["matches"]]


def test_literal_shows_itself_but_not_its_neighbours(capsys: pytest.CaptureFixture[str]) -> None:
    out = _search(capsys, str(sample_path("multi-proc")), "st_a05909b0369acc80c6bea84a")
    for m in out["memory"]["searches"][0]["matches"]:
        assert m["match"] == "st_a05909b0369acc80c6bea84a"
        assert set(m["context"].replace(m["match"], "")) == {"*"}


def test_pid_filters(capsys: pytest.CaptureFixture[str]) -> None:
    archive = str(sample_path("multi-proc"))
    value = "st_a05909b0369acc80c6bea84a"
    everyone = _search(capsys, archive, value)["memory"]["searches"][0]["matches"]
    only = _search(capsys, archive, value, "--pid", "11")["memory"]["searches"][0]
    assert {m["pid"] for m in everyone} == {1, 11}
    assert only["matches"] and {m["pid"] for m in only["matches"]} == {11}
    assert only["matches"] == [m for m in everyone if m["pid"] == 11]


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", str(sample_path("multi-proc")), "st_a05909b0369acc80c6bea84a"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "literal 'st_a05909b0369acc80c6bea84a': 5 matches"
    assert sum(line.lstrip().startswith("pid 11 ") for line in lines) == 3


def test_bad_archive_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.tar"
    bogus.write_bytes(b"not a tar at all" * 100)
    assert main(["search", str(bogus), "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("forensic-checkpoint search: error: not a checkpoint archive")
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv", [["x", "--pid", "424242"], [], ["--regex", "("]])
def test_bad_options_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(["search", str(sample_path("multi-proc")), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("forensic-checkpoint search: error: ") and err.count("\n") == 1
