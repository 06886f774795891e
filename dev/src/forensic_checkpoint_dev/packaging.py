"""Build the product's wheel and sdist as a user would, and install them into clean venvs.

Used by the install-size benchmark (``python -m benchmarks.install_size``) and the tests that
check what a plain ``pip install`` of the wheel gives (tests/install/test_packaging.py). The
build goes through ``python -m build`` (the sdist, then the wheel built from that sdist, so
the wheel's generated CRIU modules come from what the sdist ships); dependencies come from the
package index, through pip's cache.
"""

from __future__ import annotations

import os
import subprocess
import venv
from dataclasses import dataclass
from pathlib import Path

from forensic_checkpoint_dev.repo import find_repo_root

#: what a fresh venv holds before anything is installed (not counted in an install's size)
_BOOTSTRAP = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence")


@dataclass(frozen=True)
class Dists:
    wheel: Path
    sdist: Path


def _run(argv: list[str], timeout: float = 900) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")


def make_venv(path: Path) -> Path:
    """A clean venv (no system site-packages, so no Debian pycriu); returns its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


def pip_install(python: Path, *requirements: str) -> None:
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements])


def build_dists(out: Path, tools: Path) -> Dists:
    """The sdist and wheel of the checkout, built by ``build`` (installed into ``tools``)."""
    python = tools / "bin" / "python"
    if not python.exists():
        make_venv(tools)
        pip_install(python, "build>=1.2")
    _run([str(python), "-m", "build", "--outdir", str(out), str(find_repo_root())])
    (wheel,) = out.glob("forensic_checkpoint-*.whl")
    (sdist,) = out.glob("forensic_checkpoint-*.tar.gz")
    return Dists(wheel=wheel, sdist=sdist)


def site_packages(python: Path) -> Path:
    (found,) = (python.parent.parent / "lib").glob("python3*/site-packages")
    return found


def installed_size(python: Path) -> tuple[int, int]:
    """(bytes, distributions) in the venv's site-packages, without pip and setuptools."""
    size = count = 0
    for entry in site_packages(python).iterdir():
        name = entry.name.split("-")[0].lower()
        if name in _BOOTSTRAP or entry.name == "__pycache__":
            continue
        count += entry.name.endswith(".dist-info")
        files = entry.rglob("*") if entry.is_dir() else [entry]
        size += sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())
    return size, count


def clean_install(where: Path, wheel: Path, extras: str = "") -> Path:
    """``pip install WHEEL[extras]`` into a new venv at ``where``; returns its python."""
    python = make_venv(where)
    pip_install(python, f"{wheel}[{extras}]" if extras else str(wheel))
    return python


__all__ = ["Dists", "build_dists", "clean_install", "installed_size", "make_venv"]
