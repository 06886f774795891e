"""``python -m benchmarks.findings_corpus`` end to end on recorded archives (no node): the
analyzer runs as an analyst runs it, its findings are scored against truth files in the corpus
format, and the exit code follows the goals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks import findings_corpus
from tests.factories import plain_sample

pytestmark = pytest.mark.slow  # two analyzer processes, about a second each

#: what the recorded attack sample ran (tests/data/attack-revshell.truth.json)
REVSHELL = [
    {"rules": ["reverse-shell"], "pid": 14, "process": "bash: bash -i", "remote": "10.86.0.1:4444"},
    {"rules": ["memfd-exec"], "pid": 23, "process": "3: [kworker/1:1H] 86400",
     "path": "memfd:kworker"},
]  # fmt: skip


def _truth(directory: Path, name: str, kind: str, expected: list[dict[str, object]]) -> None:
    plain_sample(name, directory)
    truth = {"scenario": name, "kind": kind, "expected": expected, "allowed": [],
             "archive": {"file": f"{name}.tar"}}  # fmt: skip
    (directory / f"{name}.truth.json").write_text(json.dumps(truth))


def test_scores_a_recorded_attack_and_a_benign_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _truth(tmp_path, "attack-revshell", "attack", REVSHELL)
    _truth(tmp_path, "counter-blog-containerd", "benign", [])
    code = findings_corpus.main(["--dir", str(tmp_path), "--json", str(tmp_path / "f.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "attack  attack-revshell            Suspicious      found 2/2" in out
    assert "benign  counter-blog-containerd    not suspicious  found 0/0" in out
    assert "goals: all met" in out
    assert set(json.loads((tmp_path / "f.json").read_text())) == {
        "attack-revshell", "counter-blog-containerd"
    }  # fmt: skip


def test_a_missed_expectation_fails_the_goals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong_pid = [{**REVSHELL[0], "pid": 13}]
    _truth(tmp_path, "attack-revshell", "attack", wrong_pid)
    assert findings_corpus.main(["--dir", str(tmp_path)]) == 1
    assert "FAIL attack-revshell: missed reverse-shell on pid 13" in capsys.readouterr().out
