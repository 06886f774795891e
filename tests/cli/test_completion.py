"""`forensic-checkpoint completion bash|zsh|fish` (issue 18): the bash script is valid bash and
completes the subcommand names and each subcommand's flags."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from forensic_checkpoint.cli.main import SUBCOMMANDS, main


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def _complete(script: str, *words: str) -> set[str]:
    """What bash offers after ``words`` (the last one is the word being completed)."""
    quoted = " ".join(f"'{w}'" for w in ("forensic-checkpoint", *words))
    program = (
        f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words)}\n"
        '_forensic_checkpoint; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    bash = shutil.which("bash")
    assert bash is not None
    out = subprocess.run([bash, "-c", program], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_bash_script_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    script = _script("bash", capsys)
    bash = shutil.which("bash")
    assert bash is not None
    subprocess.run([bash, "-n", "-c", script], check=True)


def test_bash_completes_subcommands_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    script = _script("bash", capsys)
    assert set(SUBCOMMANDS) <= _complete(script, "")
    assert _complete(script, "an") == {"analyze"}
    assert _complete(script, "s") == {"search", "show-file"}
    assert {"--fail-on", "--format"} <= _complete(script, "analyze", "x.tar", "--f")
    assert "--output-file" in _complete(script, "search", "x.tar", "--output")


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_name_every_subcommand(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    script = _script(shell, capsys)
    assert all(name in script for name in SUBCOMMANDS)
    if (binary := shutil.which(shell)) is not None:  # syntax check where the shell exists
        subprocess.run([binary, "-n", "-c", script], check=True)
