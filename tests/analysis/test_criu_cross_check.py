"""Our CRIU image decoder (framing + messages generated from CRIU's protos) agrees with pycriu.

pycriu (Debian's criu package, exposed to the dev venv by scripts/setup-venv.sh) is not a
dependency of the analyzer any more; it is the independent reader we check ours against. Every
image of every committed archive is decoded by both, and the two renderings must be equal. The
protos we build from are newer (CRIU 4.1.1) than Debian bookworm's pycriu (3.17): a field that
only the newer schema knows may appear on our side alone, nothing else may differ.

This test must not skip where the dev venv is set up: without pycriu it fails and says why.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest
import zstandard
from tests.analysis.sample_data import SAMPLES, sample_path

from forensic_checkpoint.analysis.format.criu_images import IMAGE_TYPES
from forensic_checkpoint.analysis.format.criu_json import image_json
from forensic_checkpoint.analysis.format.criu_magic import BY_VALUE, IMG_COMMON, IMG_SERVICE, MAGICS


def _pycriu() -> Any:
    try:
        from pycriu import images
    except ImportError as exc:  # pragma: no cover - the dev venv has it
        pytest.fail(
            f"pycriu is not importable ({exc}): the cross-check needs Debian's criu package "
            "(scripts/setup-venv.sh exposes it to the venv; apt-get install criu)"
        )
    return images


def _images(sample: str) -> Iterator[tuple[str, bytes]]:
    """Every CRIU image (a member that starts with a known magic) of a committed archive."""
    with sample_path(sample).open("rb") as raw:
        stream = zstandard.ZstdDecompressor().stream_reader(raw)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isfile() or not member.name.startswith("checkpoint/"):
                    continue
                extracted = tar.extractfile(member)
                assert extracted is not None
                data = extracted.read()
                first = int.from_bytes(data[:4], "little")
                if first in (IMG_COMMON, IMG_SERVICE) or first in BY_VALUE:
                    yield member.name, data


def _agree(ours: Any, theirs: Any, descriptor: Any, where: str) -> None:
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        for key in theirs:
            assert key in ours, f"{where}.{key}: pycriu decodes it, we do not"
        for key, value in ours.items():
            if key not in theirs:
                known = descriptor is not None and key in descriptor.fields_by_name
                assert not known, f"{where}.{key}: we decode it, pycriu does not"
                continue
            field = descriptor.fields_by_name.get(key) if descriptor is not None else None
            _agree(value, theirs[key], field.message_type if field else None, f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), where
        for i, (one, other) in enumerate(zip(ours, theirs, strict=True)):
            _agree(one, other, descriptor, f"{where}[{i}]")
    else:
        assert ours == theirs, where


def _entry_descriptors(images: Any, magic: str, count: int) -> list[Any]:
    """pycriu's message descriptor of each entry of an image (special ones have two types)."""
    pb = images.pb
    if magic == "PAGEMAP":
        return [pb.pagemap_head.DESCRIPTOR] + [pb.pagemap_entry.DESCRIPTOR] * (count - 1)
    if magic == "GHOST_FILE":
        return [pb.ghost_file_entry.DESCRIPTOR] + [pb.ghost_chunk_entry.DESCRIPTOR] * (count - 1)
    return [images.images.handlers[magic].payload.DESCRIPTOR] * count


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_image_of_every_sample_decodes_as_pycriu_decodes_it(sample: str) -> None:
    images = _pycriu()
    kinds: set[str] = set()
    for name, data in _images(sample):
        theirs = images.load(io.BytesIO(data), pretty=False)
        ours = image_json(name, data, pretty=False)
        assert ours["magic"] == theirs["magic"], name
        assert len(ours["entries"]) == len(theirs["entries"]), name
        descriptors = _entry_descriptors(images, theirs["magic"], len(theirs["entries"]))
        for i, (one, other) in enumerate(zip(ours["entries"], theirs["entries"], strict=True)):
            _agree(one, other, descriptors[i], f"{name}[{i}]")
        kinds.add(ours["magic"])
    # the images the analyzer reads are all among them
    assert {"INVENTORY", "PSTREE", "CORE", "IDS", "MM", "FILES", "FDINFO", "PAGEMAP"} <= kinds


def test_magic_numbers_are_pycriu_s() -> None:
    _pycriu()
    from pycriu.images import magic

    for name, value in magic.by_name.items():
        if name not in ("IMG_COMMON", "IMG_SERVICE", "CRTOOLS_IMAGES_V1_1"):
            assert MAGICS[name] == value, name
    assert magic.by_name["IMG_COMMON"] == IMG_COMMON
    assert magic.by_name["IMG_SERVICE"] == IMG_SERVICE


def test_every_decodable_image_type_has_a_magic() -> None:
    """An image is named by its magic, so a type without one could never be decoded.

    pycriu's handler table still lists MEMFD_FILE, which CRIU writes only inside FILES; the
    fuzzer picked it and found the dead entry.
    """
    assert sorted(set(IMAGE_TYPES) - set(MAGICS)) == []
