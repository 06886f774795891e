"""`forensic-checkpoint-dev image`: the project's container image as `make image` caches it.

``scripts/build-image.sh`` builds the Dockerfile with buildah into an OCI archive,
``$FORENSIC_TOOLS_DIR/image-<hash of its inputs>/forensic-checkpoint.tar``, and points
``image-current`` at it. This module reads that archive (manifest, config, layers, each digest
checked), unpacks its root filesystem (whiteouts applied) for the tests, and imports it into a
containerd as the reference the chart uses by default (repository and appVersion), so that
``helm install`` with default image values runs it without a registry.

    forensic-checkpoint-dev image inspect [ARCHIVE]     digests, config, sizes
    forensic-checkpoint-dev image import --address SOCK [ARCHIVE]
    forensic-checkpoint-dev image pack LAYOUT OUT --name REF   (scripts/build-image.sh)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

import yaml

from forensic_checkpoint.errors import ToolError
from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.deploy import CHART

HELP = "Inspect the image `make image` built, or import it into a containerd."

#: The symlink ``make image`` points at the directory of the current build.
IMAGE_LINK = "image-current"
ARCHIVE_NAME = "forensic-checkpoint.tar"
#: containerd's annotation for the full reference an index entry is imported as.
NAME_ANNOTATION = "io.containerd.image.name"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Layer:
    digest: str
    media_type: str
    size: int  #: as stored (compressed)
    diff_id: str  #: sha256 of the uncompressed tar
    uncompressed: int


@dataclass(frozen=True)
class ImageArchive:
    path: Path
    name: str
    manifest_digest: str
    config: dict[str, Any]  #: the image config's "config" (User, Entrypoint, Env, ...)
    layers: tuple[Layer, ...]

    @property
    def compressed_size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def uncompressed_size(self) -> int:
        return sum(layer.uncompressed for layer in self.layers)


def reference() -> str:
    """The chart's default image: ``image.repository`` at the chart's ``appVersion``."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return f"{values['image']['repository']}:{chart['appVersion']}"


def archive_path() -> Path:
    """The archive of the current build (it may not exist: then run `make image`)."""
    return binaries.tools_dir() / IMAGE_LINK / ARCHIVE_NAME


def _blob(tar: tarfile.TarFile, digest: str) -> IO[bytes]:
    algo, _, hexdigest = digest.partition(":")
    member = tar.extractfile(f"blobs/{algo}/{hexdigest}") if algo == "sha256" else None
    if member is None:
        raise ToolError(f"image archive: no blob {digest}")
    return member


def _digest_of(stream: IO[bytes]) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    while chunk := stream.read(1 << 20):
        sha.update(chunk)
        size += len(chunk)
    return f"sha256:{sha.hexdigest()}", size


def _json_blob(tar: tarfile.TarFile, desc: dict[str, Any]) -> dict[str, Any]:
    data = _blob(tar, desc["digest"]).read()
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != desc["digest"]:
        raise ToolError(f"image archive: blob {desc['digest']} does not match its digest")
    return dict(json.loads(data))


def _open_layer(tar: tarfile.TarFile, layer: dict[str, Any]) -> IO[bytes]:
    if layer["mediaType"] not in (GZIP_LAYER, TAR_LAYER):
        raise ToolError(f"image archive: unexpected layer type {layer['mediaType']}")
    raw = _blob(tar, layer["digest"])
    if layer["mediaType"] == GZIP_LAYER:
        return cast("IO[bytes]", gzip.GzipFile(fileobj=raw))
    return raw


def inspect(path: Path) -> ImageArchive:
    """Read an OCI archive of one image and check every blob against its digest, and each
    layer's uncompressed digest against the config's diff_ids."""
    with tarfile.open(path) as tar:
        index = json.load(_blob_file(tar, "index.json"))
        if len(index["manifests"]) != 1:
            raise ToolError(f"{path}: {len(index['manifests'])} images; expected one")
        entry = index["manifests"][0]
        manifest = _json_blob(tar, entry)
        config = _json_blob(tar, manifest["config"])
        layers = []
        for desc, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
            stored = _digest_of(_blob(tar, desc["digest"]))
            unpacked = _digest_of(_open_layer(tar, desc))
            if stored != (desc["digest"], desc["size"]) or unpacked[0] != diff_id:
                raise ToolError(f"{path}: layer {desc['digest']} does not match its digests")
            layers.append(Layer(desc["digest"], desc["mediaType"], desc["size"], *unpacked))
    return ImageArchive(
        path=path,
        name=entry.get("annotations", {}).get(NAME_ANNOTATION, ""),
        manifest_digest=entry["digest"],
        config=config.get("config", {}),
        layers=tuple(layers),
    )


def _blob_file(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    member = tar.extractfile(name)
    if member is None:
        raise ToolError(f"image archive: no {name}")
    return member


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def unpack(path: Path, rootfs: Path) -> None:
    """The image's root filesystem in ``rootfs``, its layers applied in order (OCI whiteouts:
    ``.wh.<name>`` removes a lower entry, ``.wh..wh..opq`` empties a directory). Owners,
    modes and mtimes are kept when run as root (the .pyc files stay valid)."""
    rootfs.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path) as tar:
        index = json.load(_blob_file(tar, "index.json"))
        manifest = _json_blob(tar, index["manifests"][0])
        for desc in manifest["layers"]:
            with tarfile.open(fileobj=_open_layer(tar, desc), mode="r|") as layer:
                for member in layer:
                    rel = PurePosixPath(member.name)
                    if rel.is_absolute() or ".." in rel.parts:
                        raise ToolError(f"{path}: layer entry {member.name} leaves the rootfs")
                    parent = rootfs / rel.parent
                    if rel.name == ".wh..wh..opq":
                        for child in parent.iterdir() if parent.is_dir() else ():
                            _remove(child)
                    elif rel.name.startswith(".wh."):
                        _remove(parent / rel.name.removeprefix(".wh."))
                    else:
                        if not member.isdir():
                            _remove(rootfs / rel)
                        layer.extract(member, rootfs, numeric_owner=True, filter="fully_trusted")


def import_archive(ctr: Path, address: Path | str, archive: Path, *, unpack: bool = True) -> str:
    """``ctr -n k8s.io images import`` of one OCI archive into the containerd at ``address``
    (the CRI's namespace); the image keeps the name its archive gives it. Returns ctr's output."""
    result = subprocess.run(
        [str(ctr), f"--address={address}", "-n", "k8s.io", "images", "import"]
        + ([] if unpack else ["--no-unpack"])
        + [str(archive)],
        capture_output=True,
        text=True,
        timeout=600,  # the corpus image is 700 MB
        check=False,
    )
    if result.returncode != 0:
        raise ToolError(f"ctr images import {archive.name}: {result.stderr.strip()[-500:]}")
    return result.stdout


def pack(layout: Path, out: Path, name: str) -> None:
    """An OCI image layout directory (buildah push oci:) as one archive whose single index entry
    carries the full reference containerd imports it as, beside the OCI tag annotation."""
    index = json.loads((layout / "index.json").read_text())
    if len(index["manifests"]) != 1:
        raise ToolError(f"{layout}: {len(index['manifests'])} images; expected one")
    index["manifests"][0]["annotations"] = {
        NAME_ANNOTATION: name,
        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
    }
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(layout / "oci-layout", "oci-layout")
        data = json.dumps(index, sort_keys=True).encode()
        info = tarfile.TarInfo("index.json")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
        for blob in sorted((layout / "blobs").rglob("*")):
            tar.add(blob, blob.relative_to(layout).as_posix(), recursive=False)
    tmp.rename(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("inspect", help="check the archive's digests and print its sizes")
    show.add_argument("archive", nargs="?", type=Path, default=None)
    load = sub.add_parser("import", help="ctr -n k8s.io images import into a containerd")
    load.add_argument("--address", required=True, help="containerd's socket")
    load.add_argument("--ctr", type=Path, help="the ctr binary (default: make node-tools')")
    load.add_argument("archive", nargs="?", type=Path, default=None)
    write = sub.add_parser("pack", help="an OCI layout directory as an importable archive")
    write.add_argument("layout", type=Path)
    write.add_argument("out", type=Path)
    write.add_argument("--name", required=True, help="the full reference to import it as")


def run(args: argparse.Namespace) -> int:
    if args.action == "pack":
        pack(args.layout, args.out, args.name)
        return 0
    path = args.archive or archive_path()
    if not path.is_file():
        raise ToolError(f"no image archive {path}: run `make image`")
    if args.action == "import":
        ctr = args.ctr or binaries.locate_node_tools().ctr
        print(import_archive(ctr, args.address, path).strip())
        print(f"imported {reference()}: helm install needs no image values")
        return 0
    image = inspect(path)
    mib = 1 << 20
    print(f"{image.path}: {image.name} {image.manifest_digest}")
    print(
        f"  {len(image.layers)} layers: {image.compressed_size / mib:.1f} MiB compressed, "
        f"{image.uncompressed_size / mib:.1f} MiB uncompressed; user {image.config.get('User')}, "
        f"entrypoint {image.config.get('Entrypoint')}"
    )
    return 0
