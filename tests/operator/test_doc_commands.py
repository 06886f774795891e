"""Every shell example in README.md and docs/ (```sh, ```bash, ```console, and a bare block of
``$ `` prompts) runs in a test, or says in the doc source why not, right before its fence:

- ``<!-- run: samples -->``: each command runs (bash, ``set -euo pipefail``) in a directory that
  holds the committed sample archives under the names the docs use (``checkpoint.tar``, ...),
  and must exit 0;
- ``<!-- run: cluster -->``: each command runs with kubectl against the operator's dev cluster
  (``stack``), where the README's ForensicCheckpoint example has been applied to a running pod
  ``counter``, and docs/crd.md's ``blog`` to a pod ``counters``; a console block's sample
  output must be what the command prints, but for durations (AGE, FROZEN) and other objects'
  rows of ``kubectl get``;
- ``<!-- run-by: TEST -->``: that test module runs the block (and reads it from the doc);
- ``<!-- not-run: REASON -->``: not run here, and why.

A block without a marker fails the collection test: nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tests.operator.operator_e2e_support import NAMESPACE, create_pod

from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DATA = REPO / "tests" / "data"
BIN = Path(sys.executable).parent
SHELL = ("sh", "bash", "shell", "console")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!-- (run|run-by|not-run): *(.*?) *-->\n$")
#: a duration kubectl or the CRD prints (AGE 4s, 2m3s; FROZEN 149.6ms): its value varies
DURATION = re.compile(r"(\d+(\.\d+)?(ms|s|m|h|d))+")
BLOG = DATA / "counter-blog-crio.tar.zst"


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    text: str
    marker: str | None  #: run, run-by, not-run
    argument: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def shell_blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for fence in FENCE.finditer(text):
            lang, body = fence.group(1), fence.group(2)
            if lang not in SHELL and not (lang == "" and body.startswith("$ ")):
                continue
            before = text[: fence.start()]
            marker = MARKER.search(before[before.rfind("\n", 0, len(before) - 1) + 1 :])
            found.append(
                Block(
                    doc=str(doc.relative_to(REPO)),
                    line=before.count("\n") + 1,
                    text=body,
                    marker=marker.group(1) if marker else None,
                    argument=marker.group(2) if marker else "",
                )
            )
    return found


BLOCKS = shell_blocks()


def runs_on(where: str) -> list[Block]:
    return [b for b in BLOCKS if b.marker == "run" and b.argument == where]


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, its sample output lines) in order; a ``$ `` line starts a command in a console
    block, every other line being output; elsewhere each line is a command (``\\`` continues
    it) and comment lines are left out."""
    steps: list[tuple[str, list[str]]] = []
    if block.text.startswith("$ "):
        for line in block.text.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        return steps
    pending = ""
    for line in block.text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            steps.append((pending, []))
            pending = ""
    return steps


def test_every_shell_block_runs_or_says_why_not() -> None:
    unmarked = [b.id for b in BLOCKS if b.marker is None]
    assert not unmarked, (
        "mark each shell block with <!-- run: samples|cluster -->, <!-- run-by: TEST --> or "
        f"<!-- not-run: REASON --> on the line before its fence: {unmarked}"
    )
    for block in BLOCKS:
        if block.marker == "run":
            assert block.argument in ("samples", "cluster"), block.id
        elif block.marker == "run-by":
            test = REPO / block.argument
            assert test.is_file(), block.id
            assert Path(block.doc).name in test.read_text(), f"{test} does not read {block.doc}"
        else:
            assert len(block.argument) >= 10, f"{block.id}: say why it is not run"
    assert {b.doc for b in BLOCKS} >= {"README.md", "docs/install.md", "docs/analyzer.md"}
    assert runs_on("samples") and runs_on("cluster")
    # the README's sample output of the first capture runs against the cluster
    assert any(b.doc == "README.md" and "kubectl get fcp" in b.text for b in runs_on("cluster"))


def test_commands_are_split_as_a_shell_reads_them() -> None:
    block = Block("x.md", 1, "# c\na \\\n  b  # why\n\nc\n", "run", "samples")
    assert commands(block) == [("a    b  # why", []), ("c", [])]
    console = Block("x.md", 1, "$ get\nNAME A\nx 1\n$ wait\n", "run", "cluster")
    assert commands(console) == [("get", ["NAME A", "x 1"]), ("wait", [])]


def run_shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-euc", command],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _env(home: Path, path: Path, **extra: str) -> dict[str, str]:
    keep = ("PYTHONPATH", "LANG", "LC_ALL", "TMPDIR", "FORENSIC_SKIP_REAL_NODE")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(HOME=str(home), PATH=f"{path}:/usr/bin:/bin", **extra)
    return env


@pytest.fixture(scope="module")
def samples_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The committed samples under the docs' names, a YARA rule folder, and a HOME."""
    root = tmp_path_factory.mktemp("doc-samples")
    for name, sample in {
        "checkpoint.tar": "counter-blog-crio",  # pid 6; /home/counter/test-file in rootfs-diff
        "capture.tar": "counter-blog-crio",
        "before.tar": "counter-blog-crio",
        "after.tar": "counter-blog",
    }.items():
        shutil.copy(DATA / f"{sample}.tar.zst", root / name)  # the readers sniff zstd
    (root / "rules").mkdir()
    (root / "rules" / "secret.yar").write_text(
        'rule secret { strings: $a = "secret" condition: $a }'
    )
    home = root / "home"
    (home / ".config" / "fish" / "completions").mkdir(parents=True)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "forensic-checkpoint").symlink_to(BIN / "forensic-checkpoint")
    return root, _env(home, bin_dir)


@pytest.mark.slow  # each command is a process that reads a sample archive
@pytest.mark.parametrize("block", runs_on("samples"), ids=lambda b: b.id)
def test_block_runs_on_the_samples(block: Block, samples_dir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = samples_dir
    for command, _ in commands(block):
        done = run_shell(command, cwd, env)
        assert done.returncode == 0, f"{block.id}: {command}\n{done.stderr[-2000:]}"


def _clear(stack: LocalStack, checkpoints: list[str], pods: list[str]) -> None:
    """Delete what the doc examples name, as other modules on this worker's dev cluster may
    have created (test_operator_e2e.py's pod ``counters`` and ``blog``) or will create."""
    kubectl = [str(binaries.locate("kubectl")), "--kubeconfig", str(stack.cluster.kubeconfig)]
    for args in (
        ["delete", "fcp", *checkpoints, "--ignore-not-found", "--timeout=120s"],
        ["delete", "pod", *pods, "--ignore-not-found", "--grace-period=0", "--force"],
    ):
        done = subprocess.run(
            [*kubectl, "-n", NAMESPACE, *args],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def doc_cluster(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The objects the docs' cluster examples show, captured by the operator: the README's
    example (``suspicious-counter`` of pod ``counter``) and crd.md's ``blog`` (pod
    ``counters``), on node-1 with the CRI-O blog sample; kubectl on the PATH with a kubeconfig
    whose context's namespace is theirs."""
    readme = (REPO / "README.md").read_text()
    example = next(
        obj
        for block in re.findall(r"```ya?ml\n(.*?)```", readme, re.S)
        for obj in yaml.safe_load_all(block)
        if isinstance(obj, dict) and obj.get("kind") == "ForensicCheckpoint"
    )
    checkpoints = ["blog", example["metadata"]["name"]]
    pods = ["counters", example["spec"]["podName"]]
    _clear(stack, checkpoints, pods)
    create_pod(stack, example["spec"]["podName"], "node-1", containers=("counter",),
               archive=str(BLOG))  # fmt: skip
    create_pod(stack, "counters", "node-1", containers=("counter",), archive=str(BLOG))
    root = tmp_path_factory.mktemp("doc-cluster")
    admin = yaml.safe_load(stack.cluster.kubeconfig.read_text())
    for context in admin["contexts"]:
        context["context"]["namespace"] = NAMESPACE
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(admin))
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(binaries.locate("kubectl"))
    (bin_dir / "kubectl-forensic").symlink_to(BIN / "kubectl-forensic")
    env = _env(root, bin_dir, KUBECONFIG=str(kubeconfig))
    body = {**example, "metadata": {"name": example["metadata"]["name"]}}
    created = subprocess.run(
        ["kubectl", "create", "-f", "-"], input=yaml.safe_dump(body), env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    stack.create_checkpoint(NAMESPACE, "blog", {"podName": "counters"})
    for name in ("blog",):
        done = run_shell(
            f"kubectl wait --for=jsonpath='{{.status.phase}}'=Completed fcp/{name} --timeout=120s",
            root, env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    env["DOC_CLUSTER_ROOT"] = str(root)
    yield env
    _clear(stack, checkpoints, pods)


def same_output(expected: list[str], printed: str) -> str | None:
    """None when ``printed`` is the sample ``expected``, else what differs. Durations may
    differ; a ``kubectl get`` table (a ``NAME`` header) may have rows of other objects."""
    lines = printed.splitlines()
    if expected and expected[0].startswith("NAME "):
        rows = {line.split()[0]: line for line in lines[1:]}
        pairs = [(expected[0], lines[0] if lines else "")]
        pairs += [(row, rows.get(row.split()[0], "")) for row in expected[1:]]
    else:
        if len(lines) != len(expected):
            return f"{len(lines)} lines, not {len(expected)}: {printed!r}"
        pairs = list(zip(expected, lines, strict=True))
    for want, got in pairs:
        a, b = want.split(), got.split()
        if len(a) != len(b) or not all(
            x == y or (DURATION.fullmatch(x) and DURATION.fullmatch(y))
            for x, y in zip(a, b, strict=False)
        ):
            return f"shown: {want!r}\nprinted: {got!r}"
    return None


@pytest.mark.parametrize("block", runs_on("cluster"), ids=lambda b: b.id)
def test_block_runs_on_the_cluster(block: Block, doc_cluster: dict[str, str]) -> None:
    cwd = Path(doc_cluster["DOC_CLUSTER_ROOT"])
    for command, sample in commands(block):
        done = run_shell(command, cwd, doc_cluster)
        assert done.returncode == 0, f"{block.id}: {command}\n{done.stderr[-2000:]}"
        difference = same_output(sample, done.stdout) if sample else None
        assert difference is None, f"{block.id}: $ {command}\n{difference}"
