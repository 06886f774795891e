"""Every subcommand of both CLIs, on garbage, answers with one `error:` line and a non-zero exit.

Issue 18 ("no traceback for any bad input"): random bytes as an archive, an empty file, a
directory, a missing path, a truncated real archive, bad flag values and unusable kubeconfigs.
Each runs as a subprocess, as a user runs it, so that nothing the boundary misses (a traceback,
an exit 0) can hide behind pytest's capture.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.analysis.sample_data import sample_path

SAMPLE = sample_path("counter-blog")

#: the analyzer's subcommands that take an archive, as argv templates ({a} = the archive)
ARCHIVE_COMMANDS = {
    "analyze": ["analyze", "{a}"],
    "search": ["search", "{a}", "RANDOM_5519_KEY"],
    "diff": ["diff", "{a}", "{a}"],
    "show-file-path": ["show-file", "{a}", "/etc/hostname"],
    "show-file-member": ["show-file", "{a}", "checkpoint/core-6.img", "--decode"],
    "show-file-memory": ["show-file", "{a}", "memory:6"],
    "list": ["list", "{a}"],
    "verify": ["verify", "{a}", "--sidecar", "{a}"],
}

#: what reads the whole archive must never exit 0 on a truncated one
WHOLE_ARCHIVE = {"analyze", "search", "diff"}

GARBAGE = ("random", "empty", "directory", "missing", "truncated")

#: bad flag values and unusable inputs besides the archive; {s} = the real sample, {g} = a file
#: of random bytes, {d} = a directory, {m} = a path that does not exist
BAD_FLAGS = {
    "analyze-context": ["analyze", "{s}", "--context", "-1"],
    "analyze-max-matches": ["analyze", "{s}", "--max-matches", "many"],
    "analyze-pid-missing": ["analyze", "{s}", "--pid", "99999"],
    "analyze-regex": ["analyze", "{s}", "--search-regex", "("],
    "analyze-yara-garbage": ["analyze", "{s}", "--yara", "{g}"],
    "analyze-yara-missing": ["analyze", "{s}", "--yara", "{m}"],
    "analyze-identity-garbage": ["analyze", "{s}", "-i", "{g}"],
    "analyze-identity-directory": ["analyze", "{s}", "-i", "{d}"],
    "analyze-output-file": ["analyze", "{s}", "-o", "{m}/report.txt"],
    "analyze-output-file-new": ["analyze", "{s}", "-O", "{m}/report.txt"],
    "analyze-format": ["analyze", "{s}", "-o", "xml"],
    "analyze-format-deprecated": ["analyze", "{s}", "--format", "xml"],
    "analyze-fail-on": ["analyze", "{s}", "--fail-on", "severe"],
    "search-format": ["search", "{s}", "x", "-o", "html"],
    "diff-output-file": ["diff", "{s}", "{s}", "-O", "{d}"],
    "list-format": ["list", "{s}", "-o", "wide"],
    "show-file-output-file-new": ["show-file", "{s}", "checkpoint/core-6.img", "-O", "{d}"],
    "analyze-export-html": ["analyze", "{s}", "--export-html", "{m}/report.html"],
    "search-pid": ["search", "{s}", "x", "--pid", "99999"],
    "search-regex": ["search", "{s}", "--regex", "(?P<"],
    "show-file-memory-spec": ["show-file", "{s}", "memory:abc"],
    "show-file-member-missing": ["show-file", "{s}", "checkpoint/nothere.img"],
    "show-file-output-file": ["show-file", "{s}", "checkpoint/core-6.img", "-o", "{d}"],
    "list-missing": ["list", "{m}"],
    "verify-sidecar-missing": ["verify", "{s}", "--sidecar", "{m}"],
    "verify-kubeconfig": ["verify", "{s}", "--ref", "x", "--kubeconfig", "{g}"],
    "nodes-kubeconfig-garbage": ["nodes", "--kubeconfig", "{g}"],
    "nodes-kubeconfig-directory": ["nodes", "--kubeconfig", "{d}"],
    "nodes-kubeconfig-missing": ["nodes", "--kubeconfig", "{m}"],
    "operator-flag": ["operator", "--no-such-flag"],
    "agent-flag": ["agent", "--no-such-flag"],
    "criu-log-reader-socket": ["criu-log-reader", "--socket", "{m}/s", "--dir", "{d}"],
    "completion-shell": ["completion", "tcsh"],
    "no-such-command": ["frobnicate"],
}

#: every `kubectl forensic` subcommand with a kubeconfig of random bytes (it is read first)
PLUGIN = {
    "capture": ["capture", "pod"],
    "report": ["report", "fcp"],
    "get-archive": ["get-archive", "fcp", "-O", "{m}/a.tar"],
    "nodes": ["nodes"],
    "kubelet-cert": ["kubelet-cert"],
}
PLUGIN_BAD_FLAGS = {
    "report-output": ["report", "fcp", "-o", "xml"],
    "capture-timeout": ["capture", "pod", "--timeout-seconds", "soon"],
    "get-archive-no-file": ["get-archive", "fcp"],
    "nodes-output": ["nodes", "-o", "wide"],
    "no-such-command": ["frobnicate"],
}


@pytest.fixture(scope="module")
def garbage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("garbage")
    paths = {name: root / name for name in GARBAGE}
    paths["random"].write_bytes(os.urandom(64 * 1024))
    paths["empty"].write_bytes(b"")
    paths["directory"].mkdir()
    data = SAMPLE.read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    return paths


def _run(module: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NO_COLOR")}
    env.pop("FORENSIC_CHECKPOINT_DEBUG", None)
    env["HOME"] = str(cwd)  # no ~/.kube/config of the machine's
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


def _assert_one_error_line(result: subprocess.CompletedProcess[str]) -> None:
    err = result.stderr
    assert "Traceback" not in err, err
    assert result.returncode != 0, (result.returncode, err)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert "internal error" not in err, err


def _fill(argv: list[str], values: dict[str, str]) -> list[str]:
    return [arg.format(**values) for arg in argv]


def _values(garbage: dict[str, Path]) -> dict[str, str]:
    return {
        "s": str(SAMPLE),
        "g": str(garbage["random"]),
        "d": str(garbage["directory"]),
        "m": str(garbage["directory"].parent / "does-not-exist"),
    }


def _applies(command: str, kind: str) -> bool:
    """A truncated copy still holds the start, which is all some commands read; a directory is
    what `list` takes (an empty one lists nothing). Neither pair is bad input for them."""
    if kind == "truncated":
        return command in WHOLE_ARCHIVE | {"verify"}
    return not (kind == "directory" and command == "list")


@pytest.mark.parametrize(
    ("command", "kind"),
    [(c, k) for c in sorted(ARCHIVE_COMMANDS) for k in GARBAGE if _applies(c, k)],
)
def test_archive_commands_on_garbage(
    command: str, kind: str, garbage: dict[str, Path], tmp_path: Path
) -> None:
    archive = garbage[kind] if kind != "missing" else tmp_path / "missing.tar"
    argv = _fill(ARCHIVE_COMMANDS[command], {"a": str(archive)})
    _assert_one_error_line(_run("forensic_checkpoint.cli.main", argv, tmp_path))


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flag_values(case: str, garbage: dict[str, Path], tmp_path: Path) -> None:
    argv = _fill(BAD_FLAGS[case], _values(garbage))
    _assert_one_error_line(_run("forensic_checkpoint.cli.main", argv, tmp_path))


@pytest.mark.parametrize("command", sorted(PLUGIN))
def test_plugin_with_a_garbage_kubeconfig(
    command: str, garbage: dict[str, Path], tmp_path: Path
) -> None:
    argv = ["--kubeconfig", str(garbage["random"]), *_fill(PLUGIN[command], _values(garbage))]
    _assert_one_error_line(_run("forensic_checkpoint.cli.kubectl_forensic", argv, tmp_path))


@pytest.mark.parametrize("command", sorted(PLUGIN))
def test_plugin_with_an_unreachable_cluster(
    command: str, garbage: dict[str, Path], tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: default}}]\n"
    )
    argv = ["--kubeconfig", str(kubeconfig), *_fill(PLUGIN[command], _values(garbage))]
    _assert_one_error_line(_run("forensic_checkpoint.cli.kubectl_forensic", argv, tmp_path))


@pytest.mark.parametrize("case", sorted(PLUGIN_BAD_FLAGS))
def test_plugin_bad_flag_values(case: str, garbage: dict[str, Path], tmp_path: Path) -> None:
    argv = _fill(PLUGIN_BAD_FLAGS[case], _values(garbage))
    _assert_one_error_line(_run("forensic_checkpoint.cli.kubectl_forensic", argv, tmp_path))
