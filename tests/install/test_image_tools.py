"""forensic_checkpoint_dev.image on small archives made here: packing buildah's OCI layout with
containerd's name annotation, checking every digest, and unpacking layers with whiteouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from forensic_checkpoint.errors import ToolError
from forensic_checkpoint_dev import image

REF = "ghcr.io/forensic-checkpoint/forensic-checkpoint:0.1.0"


def layer_tar(entries: dict[str, bytes | None]) -> bytes:
    """A layer: name -> file content, or None for a directory."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def write_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def make_layout(layout: Path, layers: list[bytes]) -> Path:
    """What `buildah push oci:` writes: an OCI layout with gzip layers and one index entry."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descs = [
        {"mediaType": image.GZIP_LAYER, **write_blob(layout, gzip.compress(raw))} for raw in layers
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": "65532:65532", "Entrypoint": ["forensic-checkpoint"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}" for raw in layers],
        },
    }
    manifest = {
        "schemaVersion": 2,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **write_blob(layout, json.dumps(config).encode()),
        },
        "layers": descs,
    }
    entry = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **write_blob(layout, json.dumps(manifest).encode()),
        "annotations": {"org.opencontainers.image.ref.name": REF},
    }
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return layout


LOWER = layer_tar(
    {
        "etc": None,
        "etc/keep": b"kept",
        "etc/gone": b"removed by the upper layer",
        "cache": None,
        "cache/old": b"hidden by an opaque directory",
        "opt": None,
        "opt/file": b"v1",
    }
)
UPPER = layer_tar(
    {
        "etc/.wh.gone": b"",
        "cache/.wh..wh..opq": b"",
        "cache/new": b"fresh",
        "opt/file": b"v2",
    }
)


def test_pack_names_the_image_for_containerd_and_inspect_checks_every_digest(
    tmp_path: Path,
) -> None:
    layout = make_layout(tmp_path / "layout", [LOWER, UPPER])
    archive = tmp_path / "image.tar"
    image.pack(layout, archive, REF)
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    annotations = index["manifests"][0]["annotations"]
    assert annotations == {image.NAME_ANNOTATION: REF, "org.opencontainers.image.ref.name": "0.1.0"}
    found = image.inspect(archive)
    assert found.name == REF
    assert found.config["User"] == "65532:65532"
    assert found.uncompressed_size == len(LOWER) + len(UPPER)
    assert found.compressed_size == sum(layer.size for layer in found.layers)


def test_inspect_refuses_a_layer_that_does_not_match_its_digest(tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "layout", [LOWER])
    layer = next(
        p for p in (layout / "blobs" / "sha256").iterdir() if p.read_bytes()[:2] == b"\x1f\x8b"
    )
    layer.write_bytes(gzip.compress(LOWER + b"\0" * 512))
    image.pack(layout, tmp_path / "image.tar", REF)
    with pytest.raises(ToolError, match="does not match"):
        image.inspect(tmp_path / "image.tar")


def test_unpack_applies_the_layers_in_order_with_whiteouts(tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "layout", [LOWER, UPPER])
    image.pack(layout, tmp_path / "image.tar", REF)
    rootfs = tmp_path / "rootfs"
    image.unpack(tmp_path / "image.tar", rootfs)
    files = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*") if p.is_file())
    assert files == ["cache/new", "etc/keep", "opt/file"]
    assert (rootfs / "opt" / "file").read_bytes() == b"v2"


def test_unpack_refuses_an_entry_outside_the_rootfs(tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "layout", [layer_tar({"../escape": b"x"})])
    image.pack(layout, tmp_path / "image.tar", REF)
    with pytest.raises(ToolError, match="leaves the rootfs"):
        image.unpack(tmp_path / "image.tar", tmp_path / "rootfs")
    assert not (tmp_path / "escape").exists()


def fake_ctr(tmp_path: Path, exit_code: int) -> Path:
    """A ctr that records its arguments and exits with ``exit_code``."""
    ctr = tmp_path / "ctr"
    ctr.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\necho refused >&2\nexit {exit_code}\n')
    ctr.chmod(0o755)
    return ctr


def test_import_archive_runs_ctr_in_the_cri_namespace(tmp_path: Path) -> None:
    ctr, archive = fake_ctr(tmp_path, 0), tmp_path / "image.tar"
    image.import_archive(ctr, "/run/c.sock", archive)
    argv = (tmp_path / "argv").read_text().split()
    assert argv == ["--address=/run/c.sock", "-n", "k8s.io", "images", "import", str(archive)]
    image.import_archive(ctr, "/run/c.sock", archive, unpack=False)
    assert "--no-unpack" in (tmp_path / "argv").read_text().split()


def test_import_archive_fails_with_ctrs_message(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"image\.tar: refused"):
        image.import_archive(fake_ctr(tmp_path, 1), "/run/c.sock", tmp_path / "image.tar")
