"""The kubectl plugin's krew package: ``dist/kubectl-forensic-vVERSION.tar.gz`` and its krew
manifest ``plugins/forensic.yaml``, both from pyproject's version (``make plugin-dist``).

The plugin is Python, so its archive is the same for every platform krew serves: the product's
wheel, a POSIX ``kubectl-forensic`` launcher and the license. On first use the launcher makes a
venv next to itself (inside krew's store, so ``kubectl krew uninstall`` removes it) with
``python3`` (>= 3.11) and installs the wheel with its ``operator`` extra; then it runs the
plugin from there.

The build is reproducible, so that the manifest's sha256 is the archive's and a test can
rebuild and compare: hatchling writes fixed wheel timestamps (its backend is pinned here so
that its ``Generator`` line does not move), and the tarball has sorted members, one mtime,
root ownership and a gzip header without name or time.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

import yaml

from forensic_checkpoint_dev.repo import find_repo_root

HELP = "Build the kubectl plugin's krew archive (dist/) and write plugins/forensic.yaml."

MANIFEST = Path("plugins") / "forensic.yaml"
#: The wheel build's backend, pinned for a reproducible wheel (pyproject's build-system names
#: the lower bounds; grpcio-tools is pinned there already).
BUILD_CONSTRAINTS = ("hatchling==1.33.0", "grpcio-tools==1.75.1")
#: Every member's mtime (2020-02-02, hatchling's own reproducible wheel time).
MTIME = 1580601600
RELEASES = "https://github.com/forensic-checkpoint/forensic-checkpoint/releases/download"

LAUNCHER = """\
#!/bin/sh
# kubectl-forensic {version} (krew): on first use, installs the wheel next to this script with
# its operator extra into a venv here (python3 >= 3.11; $KUBECTL_FORENSIC_PYTHON picks
# another), then runs the plugin from it. pip's own settings (PIP_INDEX_URL, ...) apply.
set -eu
self=$0
while [ -L "$self" ]; do  # krew links ~/.krew/bin/kubectl-forensic to its store
  link=$(readlink "$self")
  case $link in /*) self=$link ;; *) self=$(dirname "$self")/$link ;; esac
done
here=$(cd "$(dirname "$self")" && pwd -P)
venv="$here/venv"
if [ ! -e "$venv/.installed" ]; then  # a venv's scripts name its path: build it in place
  python=${{KUBECTL_FORENSIC_PYTHON:-python3}}
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "kubectl-forensic: needs Python >= 3.11 as $python (or set KUBECTL_FORENSIC_PYTHON)" >&2
    exit 1
  fi
  echo "kubectl-forensic: first run, installing into $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \\
    "$here/{wheel}[operator]" >&2
  touch "$venv/.installed"
fi
exec "$venv/bin/kubectl-forensic" "$@"
"""


def version(root: Path) -> str:
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return str(project["version"])


def archive_name(ver: str) -> str:
    return f"kubectl-forensic-v{ver}.tar.gz"


def build_wheel(root: Path, out: Path) -> Path:
    """The product's wheel of the checkout at ``root`` (pip's PEP 517 build, pinned backend)."""
    with tempfile.TemporaryDirectory(prefix="plugin-wheel-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("\n".join(BUILD_CONSTRAINTS) + "\n")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(PIP_CONSTRAINT=str(constraints), SOURCE_DATE_EPOCH=str(MTIME))
        wheels = Path(tmp) / "wheels"
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
             "-w", str(wheels), str(root)],
            capture_output=True, text=True, env=env, timeout=900, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the wheel build failed:\n{done.stdout}{done.stderr[-3000:]}")
        (wheel,) = wheels.glob("forensic_checkpoint-*.whl")
        out.mkdir(parents=True, exist_ok=True)
        return Path(wheel.replace(out / wheel.name))


def build_archive(root: Path, out: Path) -> Path:
    """``out/kubectl-forensic-vVERSION.tar.gz`` of the checkout at ``root``; returns its path."""
    ver = version(root)
    with tempfile.TemporaryDirectory(prefix="plugin-dist-") as tmp:
        wheel = build_wheel(root, Path(tmp))
        members = {
            "LICENSE": ((root / "LICENSE").read_bytes(), 0o644),
            "kubectl-forensic": (LAUNCHER.format(version=ver, wheel=wheel.name).encode(), 0o755),
            wheel.name: (wheel.read_bytes(), 0o644),
        }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data, mode = members[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    out.mkdir(parents=True, exist_ok=True)
    path = out / archive_name(ver)
    with path.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(raw.getvalue())
    return path


def render_manifest(ver: str, sha256: str) -> str:
    """The krew Plugin manifest for the archive of version ``ver`` with digest ``sha256``."""
    manifest = {
        "apiVersion": "krew.googlecontainertools.github.com/v1alpha2",
        "kind": "Plugin",
        "metadata": {"name": "forensic"},
        "spec": {
            "version": f"v{ver}",
            "homepage": "https://github.com/forensic-checkpoint/forensic-checkpoint",
            "shortDescription": "Capture and fetch forensic container checkpoints",
            "description": (
                "Checkpoints a pod's containers through the forensic-checkpoint operator\n"
                "(ForensicCheckpoint objects), waits for the analysis, prints its report and\n"
                "downloads the archive with its sha256 and custody chain checked. Needs the\n"
                "forensic-checkpoint operator in the cluster.\n"
            ),
            "caveats": (
                "Needs python3 >= 3.11 on the PATH (or KUBECTL_FORENSIC_PYTHON). The first run\n"
                "installs the bundled wheel with its dependencies (from your package index)\n"
                "into a venv in the plugin's krew directory.\n"
            ),
            "platforms": [
                {
                    "selector": {
                        "matchExpressions": [
                            {"key": "os", "operator": "In", "values": ["darwin", "linux"]}
                        ]
                    },
                    "uri": f"{RELEASES}/v{ver}/{archive_name(ver)}",
                    "sha256": sha256,
                    "bin": "kubectl-forensic",
                }
            ],
        },
    }
    header = (
        "# Generated by `make plugin-dist` (forensic-checkpoint-dev plugin-dist): do not edit.\n"
    )
    return header + yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=100)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, as krew-index's manifests write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("dist"), help="archive directory")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 when {MANIFEST} is not the one of a fresh build (nothing written there)",
    )


def run(args: argparse.Namespace) -> int:
    root = find_repo_root()
    archive = build_archive(root, args.out if args.out.is_absolute() else root / args.out)
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    text = render_manifest(version(root), sha256)
    target = root / MANIFEST
    print(f"{archive}: sha256 {sha256}")
    if args.check:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            print(f"{MANIFEST} is stale: run `make plugin-dist`", file=sys.stderr)
            return 1
        return 0
    target.parent.mkdir(exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {MANIFEST}")
    return 0
