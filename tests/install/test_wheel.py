"""The product's wheel and image hold the product only: the dev harness (dev/, the package
``forensic_checkpoint_dev``) is installed by `make setup` next to it, never shipped."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from .chart import REPO

HARNESS_NAMES = ("forensic_checkpoint_dev", "devcluster", "fake_kubelet", "stack.py", "demo.py")


def test_the_wheel_packs_only_the_product_package() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "operator/src/forensic_checkpoint"
    ]
    product = REPO / "operator" / "src" / "forensic_checkpoint"
    sources = [p.relative_to(product).as_posix() for p in product.rglob("*.py")]
    assert not [s for s in sources if any(part in s for part in HARNESS_NAMES)]


def test_the_image_copies_only_the_product() -> None:
    copies = [
        line.split()[1]
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and "--from" not in line
    ]
    assert "operator/src" in copies
    assert not [c for c in copies if c.startswith("dev") or c == "."]


@pytest.mark.slow
def test_the_built_wheel_contains_no_dev_harness(tmp_path: Path) -> None:
    """pip builds the wheel as the image does (build isolation fetches hatchling)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
         "-w", str(tmp_path), str(REPO)],
        check=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("forensic_checkpoint-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "forensic_checkpoint/cli/main.py" in names
    shipped = [n for n in names if any(part in n for part in HARNESS_NAMES)]
    assert shipped == []
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "forensic-checkpoint-dev" not in zipfile.ZipFile(wheel).read(entry_points).decode()
