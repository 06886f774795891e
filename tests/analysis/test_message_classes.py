"""``images.message_class`` (classes from embedded descriptors) decodes like pycriu's modules."""

from __future__ import annotations

import pytest
from tests.analysis.sample_data import sample_path

from forensic_checkpoint.analysis.format.archive import scan_archive
from forensic_checkpoint.analysis.format.criu_images import IMAGE_TYPES, decode, magic_values, pb2


def _kind(member: str) -> str | None:
    """The image kind of an archive member, by CRIU's naming (core-1.img -> CORE)."""
    base = member.rsplit("/", 1)[-1].removesuffix(".img")
    stem = base.rstrip("0123456789abcdef").removesuffix("-") if "-" in base else base
    names = {
        "pstree": "PSTREE",
        "core": "CORE",
        "ids": "IDS",
        "mm": "MM",
        "fdinfo": "FDINFO",
        "files": "FILES",
        "fs": "FS",
        "utsns": "UTSNS",
        "mountpoints": "MNTS",
        "seccomp": "SECCOMP",
        "inventory": "INVENTORY",
        "netns": "NETNS",
        "tty-info": "TTY_INFO",
        "memfd": "MEMFD_INODE",
    }
    return names.get(stem)


def test_every_image_of_the_sample_decodes_as_with_pycriu(sample: str) -> None:
    contents = scan_archive(sample_path(sample), hash_file=False)
    checked: set[str] = set()
    for name, blob in sorted(contents.data.items()):
        kind = _kind(name)
        if kind is None or len(blob) < 8:
            continue
        ours = decode(kind, blob, name)
        module, message, _ = IMAGE_TYPES[kind]
        generated = getattr(pb2(module), message)
        assert type(ours.entries[0]) is not generated  # really the embedded-descriptor class
        theirs = []
        # IMG_COMMON/IMG_SERVICE magic first, unless the image starts with its own magic
        off = 4 if int.from_bytes(blob[:4], "little") == magic_values()[kind] else 8
        while off < len(blob):
            size = int.from_bytes(blob[off : off + 4], "little")
            theirs.append(generated.FromString(blob[off + 4 : off + 4 + size]))
            off += 4 + size
        assert [str(e) for e in ours.entries] == [str(e) for e in theirs], name
        checked.add(kind)
    assert {"PSTREE", "CORE", "MM", "FILES", "FDINFO"} <= checked


def test_unknown_message_is_an_image_error() -> None:
    from forensic_checkpoint.analysis.format.criu_images import message_class
    from forensic_checkpoint.errors import ImageError

    with pytest.raises(ImageError):
        message_class("mm_pb2", "no_such_entry")
