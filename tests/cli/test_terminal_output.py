"""Text output fits the terminal and is coloured only there (issue 18, "CLI habits"):
``--color=auto|always|never`` as ls and kubectl spell it, NO_COLOR (https://no-color.org), and
tables as wide as $COLUMNS or the terminal. Run through a real pseudo-terminal and a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from tests.analysis.sample_data import sample_path

from forensic_checkpoint.analysis.presentation.style import DEFAULT_WIDTH

CLI = str(Path(sys.executable).parent / "forensic-checkpoint")
SAMPLES = [str(sample_path(name)) for name in ("counter-blog", "multi-proc", "attack-revshell")]
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Each test runs the CLI in a subprocess (an interpreter start and a sample read, ~1-2 s).
pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "LINES")}
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


def on_pty(argv: list[str], columns: int, **env: str) -> str:
    """Run ``argv`` with stdout (and stderr) on a pseudo-terminal ``columns`` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    try:
        proc = subprocess.Popen(argv, stdout=slave, stderr=slave, env=_env(**env))
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(master)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def on_pipe(argv: list[str], **env: str) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, env=_env(**env), timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def widest(text: str) -> int:
    return max(len(ANSI.sub("", line)) for line in text.splitlines())


LIST = [CLI, "list", *SAMPLES]


def test_terminal_gets_colour_and_its_width() -> None:
    out = on_pty(LIST, 72)
    assert ANSI.search(out), out
    assert widest(out) <= 72
    assert ANSI.sub("", out).startswith("Checkpoints")


@pytest.mark.parametrize("how", [{"NO_COLOR": "1"}, {"TERM": "dumb"}, {"argv": "--color=never"}])
def test_no_color_on_a_terminal(how: dict[str, str]) -> None:
    flag = how.pop("argv", None)
    out = on_pty([*LIST, *([flag] if flag else [])], 100, **how)
    assert not ANSI.search(out), out
    assert widest(out) <= 100


def test_color_always_wins_over_no_color() -> None:
    assert ANSI.search(on_pty([*LIST, "--color=always"], 100, NO_COLOR="1"))


def test_a_pipe_gets_plain_text_of_the_default_width() -> None:
    out = on_pipe([CLI, "analyze", SAMPLES[0], "--no-memory-secrets"])
    assert "\x1b" not in out
    assert 100 < widest(out) <= DEFAULT_WIDTH


def test_columns_sets_the_width_on_a_pipe_and_a_terminal() -> None:
    argv = [CLI, "analyze", SAMPLES[0], "--no-memory-secrets"]
    assert widest(on_pipe(argv, COLUMNS="64")) <= 64
    assert widest(on_pty(argv, 120, COLUMNS="64")) <= 64
    assert "\x1b" in on_pipe([*LIST, "--color=always"])


def test_diff_takes_the_flags() -> None:
    out = on_pty([CLI, "diff", SAMPLES[0], SAMPLES[0], "--color=never"], 80)
    assert not ANSI.search(out)
    assert widest(out) <= 80
