"""The image `make image` built (the Dockerfile, with buildah): its archive, config and root
filesystem, and the image run with runc the way the chart runs it: the operator as 65532 and
the agent as uid 0, both with every capability dropped and a read-only root filesystem.

The archive comes from the cache (`make image`, which `make test` runs first); without it these
tests fail, they do not skip. Running needs root (runc), as CI is.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from forensic_checkpoint import __version__
from forensic_checkpoint_dev import image
from forensic_checkpoint_dev.cluster.binaries import SYSTEM_RUNC

from .chart import REPO

pytestmark = pytest.mark.slow
VENV = "/opt/forensic-checkpoint"
SITE = f"{VENV}/lib/python3.11/site-packages"
DATA = REPO / "tests" / "data"


@pytest.fixture(scope="module")
def archive() -> image.ImageArchive:
    path = image.archive_path()
    assert path.is_file(), f"no image archive {path}: run `make image` (make test runs it)"
    return image.inspect(path)


@pytest.fixture(scope="module")
def rootfs(archive: image.ImageArchive, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("unpacking the image with its owners and running it needs root")
    root = tmp_path_factory.mktemp("image") / "rootfs"
    image.unpack(archive.path, root)
    return root


def run_in_image(
    rootfs: Path,
    bundle: Path,
    config: dict[str, object],
    args: Sequence[str],
    *,
    uid: int,
    binds: Sequence[tuple[Path, str]] = (),
) -> subprocess.CompletedProcess[str]:
    """``args`` in the image with runc: the image's environment and working directory, the
    given uid (gid likewise), no capabilities, no new privileges, a read-only root, a tmpfs
    /tmp (the chart's emptyDir) and no network; ``binds`` are read-only."""
    assert SYSTEM_RUNC.exists(), "runc (Debian) runs the image: make image installs it"
    bundle.mkdir(parents=True, exist_ok=True)
    none: list[str] = []
    tmpfs = ["nosuid", "nodev", "mode=1777"]
    ro_bind = ["rbind", "ro"]
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": uid},
            "args": list(args),
            "env": config["Env"],
            "cwd": config.get("WorkingDir") or "/",
            "capabilities": dict.fromkeys(("bounding", "effective", "permitted"), none),
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "image-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": tmpfs},
            *(
                {"destination": dest, "type": "bind", "source": str(src), "options": ro_bind}
                for src, dest in binds
            ),
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
        },
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    name = f"fc-image-test-{uuid.uuid4().hex[:12]}"
    try:
        return subprocess.run(
            [str(SYSTEM_RUNC), "run", "--bundle", str(bundle), name],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        delete = [str(SYSTEM_RUNC), "delete", "--force", name]
        subprocess.run(delete, capture_output=True, check=False)


def test_archive_names_the_charts_image_and_runs_as_non_root(
    archive: image.ImageArchive,
) -> None:
    assert archive.name == image.reference()
    assert archive.name == f"ghcr.io/forensic-checkpoint/forensic-checkpoint:{__version__}"
    config = archive.config
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["forensic-checkpoint"]
    assert config["Cmd"] == ["--help"]
    assert config["WorkingDir"] == "/tmp"
    env = dict(entry.split("=", 1) for entry in config["Env"])
    assert env["PATH"].startswith(f"{VENV}/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # Base and the final stage; everything compressed, what `make image` prints.
    assert len(archive.layers) == 2
    assert all(layer.media_type == image.GZIP_LAYER for layer in archive.layers)
    assert archive.compressed_size < archive.uncompressed_size < 600 << 20


def dpkg_versions(rootfs: Path) -> dict[str, str]:
    status = (rootfs / "var" / "lib" / "dpkg" / "status").read_text()
    versions = {}
    for stanza in status.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, flags=re.MULTILINE))
        if "installed" in fields.get("Status", ""):
            versions[fields["Package"]] = fields["Version"]
    return versions


def test_the_final_stage_holds_the_dockerfiles_pinned_packages(rootfs: Path) -> None:
    final_stage = (REPO / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    pins = dict(re.findall(r"^\s+([a-z0-9.+-]+)=(\S+)", final_stage, flags=re.MULTILINE))
    assert set(pins) == {"python3", "ca-certificates"}
    installed = dpkg_versions(rootfs)
    assert {name: installed.get(name) for name in pins} == pins
    # No build stage leftovers: the venv tools, the sources, compilers.
    for absent in ("python3-venv", "python3-pip", "gcc", "build-essential"):
        assert absent not in installed


def test_the_image_holds_nothing_it_does_not_need(rootfs: Path) -> None:
    assert not list((rootfs / "var" / "lib" / "apt" / "lists").glob("*Packages*"))
    assert not list((rootfs / "var" / "cache" / "apt").glob("*.bin"))
    assert not any(p.is_file() for p in (rootfs / "usr" / "share" / "man").rglob("*"))
    docs = [p for p in (rootfs / "usr" / "share" / "doc").rglob("*") if p.is_file()]
    assert docs and {p.name for p in docs} == {"copyright"}
    site = rootfs / SITE.lstrip("/")
    assert not list(site.glob("pip*")) and not list(site.glob("setuptools*"))
    assert (site / "kubernetes" / "client").is_dir() and not (site / "kubernetes" / "aio").exists()
    assert not (rootfs / "src").exists()
    # What the build lent its RUN steps (the host's CA bundle, pip.conf) is in no layer.
    assert sorted(p.name for p in (rootfs / "root").iterdir()) == [".bashrc", ".profile"]
    assert not (rootfs / "etc" / "pip.conf").exists()
    passwd = (rootfs / "etc" / "passwd").read_text()
    assert "forensic:x:65532:65532::/nonexistent:/usr/sbin/nologin" in passwd


def test_the_venv_is_precompiled_for_a_read_only_root(rootfs: Path) -> None:
    """The pods' root filesystem is read-only, so the bytecode shipped is what runs: every module
    of the venv has an unchecked hash-based .pyc (PEP 552) of its very source, valid whatever
    mtimes the layers kept."""
    site = rootfs / SITE.lstrip("/")
    sources = list(site.rglob("*.py"))
    assert len(sources) > 1000
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        header = cached.read_bytes()[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER, source
        assert int.from_bytes(header[4:8], "little") == 0b01, f"{source}: not unchecked-hash"
        assert header[8:] == importlib.util.source_hash(source.read_bytes()), source


def test_the_operator_user_runs_the_cli_and_decodes_criu_images(
    archive: image.ImageArchive, rootfs: Path, tmp_path: Path
) -> None:
    script = (
        "set -e; id -u; id -g; grep '^CapEff' /proc/self/status;"
        "forensic-checkpoint --version;"
        "python3 -c 'import forensic_checkpoint.analysis.format.criu_proto.pagemap_pb2 as p;"
        " print(p.__file__)';"
        # What the operator and the agent import when they start (the kubernetes client, kopf).
        "python3 -c 'import forensic_checkpoint.controller.runner,"
        " forensic_checkpoint.agent.process, forensic_checkpoint.agent.kubelet.criu_log_reader';"
        "touch /tmp/writable; ! touch /opt/forensic-checkpoint/x 2>/dev/null && echo read-only"
    )
    result = run_in_image(rootfs, tmp_path, archive.config, ["sh", "-c", script], uid=65532)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[:3] == ["65532", "65532", "CapEff:\t0000000000000000"]
    assert lines[3] == f"forensic-checkpoint {__version__}"
    assert lines[4].startswith(f"{VENV}/lib/python3.11/site-packages/forensic_checkpoint/"), lines
    assert not (rootfs / "usr/lib/python3/dist-packages/pycriu").exists()  # no CRIU, no pycriu
    assert lines[5] == "read-only"


def test_the_agent_runs_as_root_without_capabilities_through_the_charts_shell(
    archive: image.ImageArchive, rootfs: Path, tmp_path: Path
) -> None:
    # The DaemonSet's command: /bin/sh -c 'exec forensic-checkpoint agent --advertise-address=
    # "$(printf %s "$POD_IP" | tr .: --).<domain>" "$@"' agent ARGS; here with --help.
    line = 'printf %s "$POD_IP" | tr .: -- ; echo; id -u; grep ^CapEff /proc/self/status; "$@"'
    args = ["/bin/sh", "-c", line, "agent", "forensic-checkpoint", "agent", "--help"]
    config = {**archive.config, "Env": [*archive.config["Env"], "POD_IP=10.0.1.7"]}
    result = run_in_image(rootfs, tmp_path, config, args, uid=0)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[:3] == ["10-0-1-7", "0", "CapEff:\t0000000000000000"]
    assert "--advertise-address" in result.stdout


def test_analyze_of_a_committed_archive_works_inside_the_image(
    archive: image.ImageArchive, rootfs: Path, tmp_path: Path
) -> None:
    sample = "/data/counter-blog-crio.tar.zst"
    args = ["forensic-checkpoint", "analyze", sample, "--search", "secret"]
    result = run_in_image(
        rootfs, tmp_path, archive.config, args, uid=65532, binds=[(DATA, "/data")]
    )
    assert result.returncode == 0, result.stderr
    assert "secret" in result.stdout.lower()
