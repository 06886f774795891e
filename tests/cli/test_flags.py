"""The flags both CLIs spell the same way: -o/--output FORMAT, -O/--output-file FILE, the
deprecated --format and -o FILE, and --fail-on SEVERITY with its exit code (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests.analysis.sample_data import sample_path

from forensic_checkpoint.analysis.model.findings import SEVERITIES, SEVERITY_RANK
from forensic_checkpoint.analysis.presentation.style import DEFAULT_WIDTH, MIN_WIDTH
from forensic_checkpoint.cli.flags import EXIT_FINDINGS, text_style
from forensic_checkpoint.cli.kubectl_forensic import build_parser
from forensic_checkpoint.cli.main import EXIT_INCOMPLETE, main

ATTACK = str(sample_path("attack-revshell"))
BLOG = str(sample_path("counter-blog"))

#: every analyzer subcommand with a report, argv before the format flag
REPORTS = {
    "analyze": ["analyze", BLOG, "--no-memory-secrets"],
    "search": ["search", BLOG, "RANDOM_5519_KEY"],
    "diff": ["diff", BLOG, BLOG],
    "list": ["list", BLOG],
}


@pytest.fixture(scope="module")
def attack_severities() -> list[str]:
    from forensic_checkpoint.analysis import AnalyzerOptions, analyze

    return [f.severity for f in analyze(Path(ATTACK), AnalyzerOptions()).findings]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize("command", sorted(REPORTS))
def test_dash_o_sets_the_format_everywhere(
    command: str, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*REPORTS[command], "-o", fmt]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert isinstance(doc, dict) and err == ""


@pytest.mark.parametrize("command", sorted(REPORTS))
def test_format_is_a_deprecated_alias(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*REPORTS[command], "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert isinstance(json.loads(out), dict)
    assert "warning: --format is deprecated, use -o/--output json" in err


@pytest.mark.parametrize("command", sorted(REPORTS))
def test_output_file(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "out.json"
    assert main([*REPORTS[command], "-o", "json", "--output-file", str(out_file)]) == 0
    assert capsys.readouterr().out == ""
    assert isinstance(json.loads(out_file.read_text()), dict)


def test_analyze_dash_o_file_still_works_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "report.txt"
    assert main(["analyze", BLOG, "--no-memory-secrets", "-o", str(out_file)]) == 0
    assert "Identity" in out_file.read_text() or out_file.stat().st_size > 0
    assert "deprecated for a file, use -O/--output-file" in capsys.readouterr().err


def test_show_file_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    assert main(["show-file", BLOG, "checkpoint/core-6.img", "--decode", "-O", str(new)]) == 0
    assert main(["show-file", BLOG, "checkpoint/core-6.img", "--decode", "-o", str(old)]) == 0
    assert json.loads(new.read_text()) == json.loads(old.read_text())
    assert "-o is deprecated, use -O/--output-file" in capsys.readouterr().err


def test_kubectl_plugin_speaks_kubectl() -> None:
    """-o is the format, as in kubectl; get-archive's file is -O (its former -o FILE warns)."""
    parser = build_parser()
    assert parser.parse_args(["report", "x", "-o", "yaml"]).output == "yaml"
    assert parser.parse_args(["nodes", "-o", "json"]).output == "json"
    assert parser.parse_args(["nodes"]).output == "text"
    args = parser.parse_args(["get-archive", "x", "-O", "a.tar"])
    assert args.output_file == Path("a.tar")
    with pytest.raises(SystemExit):
        parser.parse_args(["report", "x", "-o", "xml"])


@pytest.mark.parametrize("threshold", SEVERITIES)
def test_fail_on(
    threshold: str, attack_severities: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = (
        EXIT_FINDINGS
        if any(SEVERITY_RANK[s] >= SEVERITY_RANK[threshold] for s in attack_severities)
        else 0
    )
    assert main(["analyze", ATTACK, "-o", "json", "--fail-on", threshold]) == expected
    out, err = capsys.readouterr()
    assert json.loads(out)["findings"]  # the report is written either way
    assert ("--fail-on" in err) == (expected == EXIT_FINDINGS)


def test_fail_on_is_4_on_the_attack_and_0_without_the_flag(
    attack_severities: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert "high" in attack_severities or "critical" in attack_severities
    assert main(["analyze", ATTACK, "-o", "json", "--fail-on", "high"]) == EXIT_FINDINGS
    assert main(["analyze", ATTACK, "-o", "json"]) == 0


def test_incomplete_wins_over_fail_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(ATTACK).read_bytes()
    truncated = tmp_path / "truncated.tar.zst"
    truncated.write_bytes(data[: len(data) * 3 // 4])
    assert main(["analyze", str(truncated), "-o", "json", "--fail-on", "info"]) == EXIT_INCOMPLETE
    assert "incomplete" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["analyze", "search"])
def test_archive_from_stdin(command: str) -> None:
    """`-` reads the archive from stdin (spooled to a private temporary file)."""
    import subprocess
    import sys

    argv = [command, "-", "RANDOM_5519_KEY"] if command == "search" else [command, "-"]
    result = subprocess.run(
        [sys.executable, "-m", "forensic_checkpoint.cli.main", *argv, "-o", "json"],
        input=Path(BLOG).read_bytes(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    path = doc["archive"]["path"] if command == "analyze" else doc["archive"]
    assert path == "-"
    if command == "search":
        assert doc["memory"]["searches"][0]["totalMatches"] == 2


def test_text_style_rules_for_a_file_and_columns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    # a file: plain, default width, whatever the terminal
    assert text_style("auto", tmp_path / "out.txt").color is False
    assert text_style("auto", tmp_path / "out.txt").width == DEFAULT_WIDTH
    monkeypatch.setenv("COLUMNS", "12")
    assert text_style("never", None).width == MIN_WIDTH  # never narrower than readable
    monkeypatch.setenv("COLUMNS", "junk")
    assert text_style("never", None).width == DEFAULT_WIDTH
