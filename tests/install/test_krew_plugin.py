"""The kubectl plugin's krew package (issue 18, "Evidence to the laptop"): plugins/forensic.yaml
is a krew Plugin manifest of pyproject's version whose sha256 is the one of the archive that
``make plugin-dist`` builds from this tree (reproducibly), and the archive installs: its launcher,
reached through a symlink as krew links it, sets up a venv with the wheel and runs the plugin."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from forensic_checkpoint_dev import krew

from .chart import REPO

MANIFEST = yaml.safe_load((REPO / krew.MANIFEST).read_text())
VERSION = krew.version(REPO)


def test_manifest_is_a_krew_plugin_of_pyprojects_version() -> None:
    assert MANIFEST["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert MANIFEST["kind"] == "Plugin"
    assert MANIFEST["metadata"] == {"name": "forensic"}  # `kubectl forensic`
    spec = MANIFEST["spec"]
    assert spec["version"] == f"v{VERSION}"
    assert re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", spec["version"])  # krew: semver
    assert spec["homepage"].startswith("https://")
    assert 0 < len(spec["shortDescription"]) <= 50 and spec["description"].strip()
    (platform,) = spec["platforms"]
    assert set(platform) == {"selector", "uri", "sha256", "bin"}
    (expr,) = platform["selector"]["matchExpressions"]
    assert expr == {"key": "os", "operator": "In", "values": ["darwin", "linux"]}
    assert platform["uri"] == f"{krew.RELEASES}/v{VERSION}/kubectl-forensic-v{VERSION}.tar.gz"
    assert re.fullmatch(r"[0-9a-f]{64}", platform["sha256"])
    assert platform["bin"] == "kubectl-forensic"
    # the manifest is exactly what the renderer writes for that version and digest
    rendered = krew.render_manifest(VERSION, platform["sha256"])
    assert (REPO / krew.MANIFEST).read_text() == rendered
    assert "plugin-dist:" in (REPO / "Makefile").read_text()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return krew.build_archive(REPO, tmp_path_factory.mktemp("plugin-dist"))


@pytest.mark.slow  # builds the wheel (pip's PEP 517 build, ~15-30 s)
def test_manifest_sha256_is_the_archive_built_from_this_tree(archive: Path) -> None:
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert MANIFEST["spec"]["platforms"][0]["sha256"] == digest, (
        "plugins/forensic.yaml is stale: run `make plugin-dist`"
    )
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert (
        names
        == sorted(names)
        == sorted(
            ["LICENSE", "kubectl-forensic", f"forensic_checkpoint-{VERSION}-py3-none-any.whl"]
        )
    )
    assert {(m.mtime, m.uid, m.gid) for m in members} == {(krew.MTIME, 0, 0)}
    assert next(m for m in members if m.name == "kubectl-forensic").mode == 0o755


@pytest.mark.slow  # a venv and a pip install of the wheel with its operator extra
def test_the_archive_installs_and_runs_as_krew_links_it(archive: Path, tmp_path: Path) -> None:
    store = tmp_path / "store" / "forensic" / f"v{VERSION}"
    store.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(store, filter="data")
    (tmp_path / "bin").mkdir()
    link = tmp_path / "bin" / "kubectl-forensic"
    link.symlink_to(os.path.relpath(store / "kubectl-forensic", link.parent))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{tmp_path / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    first = subprocess.run(
        ["kubectl-forensic", "--help"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("usage: kubectl forensic"), first.stdout
    assert "--context" in first.stdout
    assert "first run, installing" in first.stderr
    assert (store / "venv" / "bin" / "kubectl-forensic").exists()  # removed with the store
    again = subprocess.run(
        ["kubectl-forensic", "nodes", "--help"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0 and again.stderr == "", again.stderr
