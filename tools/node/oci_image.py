#!/usr/bin/env python3
"""Write (and check) a single-layer OCI image archive that `ctr -n k8s.io images import` accepts.

    oci_image.py build --rootfs DIR --name REF --out FILE.tar [--entrypoint JSON] [--cmd JSON]
                       [--env K=V ...] [--workdir DIR]
    oci_image.py verify FILE.tar [--name REF]

The layer is one uncompressed tar of DIR, sorted, with every mtime set to 0 and no user or group
names (numeric owners and modes are kept), so the same rootfs gives the same digests. Device
nodes are refused: the runtime mounts /dev. The archive is an OCI image layout (oci-layout,
index.json, blobs/sha256/...) whose index names the image with both
`io.containerd.image.name` (the full reference containerd imports it as) and
`org.opencontainers.image.ref.name` (its tag). Standard library only; used by
tools/node/build-images.sh.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from pathlib import Path
from typing import IO, Any

MTIME = 0
CREATED = "1970-01-01T00:00:00Z"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
PLATFORM = {"architecture": "amd64", "os": "linux"}


class HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.out.write(view)
        self.size += len(view)
        return len(view)


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def descriptor(media_type: str, data_digest: str, size: int, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": f"sha256:{data_digest}", "size": size, **extra}


def rootfs_paths(rootfs: Path) -> list[str]:
    """Every path under rootfs, relative, sorted so a directory precedes its contents.
    Symbolic links to directories (merged /usr: bin -> usr/bin) are entries, never followed."""
    paths = []
    for top, dirs, files in os.walk(rootfs):
        rel = os.path.relpath(top, rootfs)
        if rel != ".":
            paths.append(rel)
        links = {d for d in dirs if Path(top, d).is_symlink()}
        dirs[:] = sorted(set(dirs) - links)
        paths.extend(str(Path(rel, name)) for name in sorted([*files, *links]))
    return paths


def write_layer(rootfs: Path, out: IO[bytes]) -> tuple[str, int]:
    writer = HashingWriter(out)
    with tarfile.open(fileobj=writer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in rootfs_paths(rootfs):
            full = rootfs / rel
            mode = full.lstat().st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                raise SystemExit(f"oci_image: device node {full} in the rootfs; remove it")
            if stat.S_ISSOCK(mode):
                continue
            info = tar.gettarinfo(str(full), arcname=rel)
            info.mtime = MTIME
            info.uname = info.gname = ""
            if info.isreg():
                with full.open("rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)
    return writer.sha.hexdigest(), writer.size


def build(args: argparse.Namespace) -> None:
    rootfs = Path(args.rootfs)
    out = Path(args.out)
    layer_tmp = out.with_name(out.name + ".layer")
    with layer_tmp.open("wb") as layer_file:
        layer_digest, layer_size = write_layer(rootfs, layer_file)
    container_config: dict[str, Any] = {"Env": args.env}
    if args.entrypoint:
        container_config["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        container_config["Cmd"] = json.loads(args.cmd)
    if args.workdir:
        container_config["WorkingDir"] = args.workdir
    config = canonical(
        {
            **PLATFORM,
            "created": CREATED,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created": CREATED, "created_by": "forensic-checkpoint oci_image.py"}],
        }
    )
    config_digest = hashlib.sha256(config).hexdigest()
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor(CONFIG_TYPE, config_digest, len(config)),
            "layers": [descriptor(LAYER_TYPE, layer_digest, layer_size)],
        }
    )
    manifest_digest = hashlib.sha256(manifest).hexdigest()
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    annotations = {
        "io.containerd.image.name": args.name,
        "org.opencontainers.image.ref.name": tag,
    }
    index = canonical(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [
                descriptor(
                    MANIFEST_TYPE,
                    manifest_digest,
                    len(manifest),
                    annotations=annotations,
                    platform=PLATFORM,
                )
            ],
        }
    )
    archive_tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(archive_tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))

        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.mode = tarfile.DIRTYPE, MTIME, 0o755
            tar.addfile(info)

        add_bytes("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
        add_bytes("index.json", index)
        add_dir("blobs")
        add_dir("blobs/sha256")
        add_bytes(f"blobs/sha256/{config_digest}", config)
        add_bytes(f"blobs/sha256/{manifest_digest}", manifest)
        info = tarfile.TarInfo(f"blobs/sha256/{layer_digest}")
        info.size, info.mtime, info.mode = layer_size, MTIME, 0o644
        with layer_tmp.open("rb") as layer_data:
            tar.addfile(info, layer_data)
    layer_tmp.unlink()
    archive_tmp.rename(out)
    print(f"{out}: {args.name} manifest sha256:{manifest_digest} layer {layer_size} bytes")


def blob(tar: tarfile.TarFile, desc: dict[str, Any], what: str) -> bytes | None:
    """Check the blob a descriptor names (digest and size); return it when small (JSON)."""
    algo, _, hexdigest = desc["digest"].partition(":")
    if algo != "sha256":
        raise SystemExit(f"oci_image: {what}: unsupported digest {desc['digest']}")
    member = tar.extractfile(f"blobs/sha256/{hexdigest}")
    if member is None:
        raise SystemExit(f"oci_image: {what}: blob {desc['digest']} is not a file")
    sha, size, kept = hashlib.sha256(), 0, bytearray()
    while chunk := member.read(1 << 20):
        sha.update(chunk)
        size += len(chunk)
        if size <= 1 << 20:
            kept += chunk
    if sha.hexdigest() != hexdigest or size != desc["size"]:
        raise SystemExit(f"oci_image: {what}: blob {desc['digest']} does not match its descriptor")
    return bytes(kept) if size <= 1 << 20 else None


def verify(args: argparse.Namespace) -> None:
    with tarfile.open(args.archive) as tar:
        layout_file = tar.extractfile("oci-layout")
        index_file = tar.extractfile("index.json")
        if layout_file is None or index_file is None:
            raise SystemExit(f"oci_image: {args.archive}: not an OCI image layout")
        if json.load(layout_file).get("imageLayoutVersion") != "1.0.0":
            raise SystemExit(f"oci_image: {args.archive}: unknown oci-layout version")
        manifests = json.load(index_file)["manifests"]
        names = [m.get("annotations", {}).get("io.containerd.image.name") for m in manifests]
        if args.name and names != [args.name]:
            raise SystemExit(f"oci_image: {args.archive}: names {names}, expected {args.name}")
        for desc in manifests:
            manifest = json.loads(blob(tar, desc, "manifest") or b"null")
            config = json.loads(blob(tar, manifest["config"], "config") or b"null")
            layers = manifest["layers"]
            for layer in layers:
                if layer["mediaType"] != LAYER_TYPE:
                    raise SystemExit(f"oci_image: unexpected layer type {layer['mediaType']}")
                blob(tar, layer, "layer")
            if config["rootfs"]["diff_ids"] != [layer["digest"] for layer in layers]:
                raise SystemExit(f"oci_image: {args.archive}: diff_ids do not match the layers")
            size = sum(layer["size"] for layer in layers)
            print(f"{args.archive}: ok: {names[0]} {desc['digest']} ({size} bytes of layers)")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--rootfs", required=True)
    b.add_argument("--name", required=True, help="full reference, e.g. docker.io/library/x:tag")
    b.add_argument("--out", required=True)
    b.add_argument("--entrypoint", help="JSON list")
    b.add_argument("--cmd", help="JSON list")
    b.add_argument("--env", action="append", default=[], help="K=V (repeatable)")
    b.add_argument("--workdir")
    v = sub.add_parser("verify")
    v.add_argument("archive")
    v.add_argument("--name", help="the io.containerd.image.name the archive must carry")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args)
    else:
        verify(args)


if __name__ == "__main__":
    main(sys.argv[1:])
