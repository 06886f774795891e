"""Archive members: safe names, kinds, and which members the analyzer keeps in memory.

Archives are untrusted: a name that is absolute or climbs out with ``..`` is never read, and a
link is judged by where it points, never followed."""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass

from forensic_checkpoint.errors import (
    UnsafeArchiveError,
)


@dataclass
class MemberInfo:
    name: str
    size: int
    #: "file" | "dir" | "symlink" | "hardlink" | "other"
    kind: str
    mode: int
    mtime: int
    linkname: str = ""
    #: byte offset of the data in the (decompressed) tar stream
    offset_data: int = 0


def normalize_name(name: str) -> str | None:
    """The member name without ``./``; None when it is absolute or climbs out with ``..``."""
    if name.startswith("/"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts) + ("/" if name.endswith("/") and parts else "")


def link_escapes(member_name: str, target: str) -> bool:
    """True when a symlink target leaves the archive root."""
    if target.startswith("/"):
        return True
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member_name), target))
    return joined == ".." or joined.startswith("../")


def member_kind(info: tarfile.TarInfo) -> str:
    """file, dir, symlink, hardlink or other: the type names the report uses."""
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    return "other"


def is_pages(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return name.startswith("checkpoint/") and base.startswith("pages-") and base.endswith(".img")


#: members read into memory, besides CRIU images under checkpoint/
_KEPT_TOP = frozenset(
    {
        "config.dump",
        "spec.dump",
        "stats-dump",
        "status",
        "status.dump",
        "network.status",
        "bind.mounts",
        "deleted.files",
        "pod.options",
        "pod.dump",
    }
)


#: engine-specific names of the container log
LOG_MEMBERS = ("io.kubernetes.cri-o.LogPath", "container.log", "ctr.log")


#: CRIU's own log (CRI-O and containerd put it in the archive; podman does not)
DUMP_LOG = "dump.log"


ROOTFS_DIFF = "rootfs-diff.tar"


def wanted_in_memory(name: str) -> bool:
    if name in _KEPT_TOP:
        return True
    if not name.startswith("checkpoint/") or is_pages(name):
        return False
    base = name.rsplit("/", 1)[-1]
    return (base.endswith(".img") and not base.startswith("tmpfs-")) or base == "descriptors.json"


def check_safe_member_name(name: str) -> str:
    """Normalise a user-given member path or raise UnsafeArchiveError."""
    norm = normalize_name(name)
    if norm is None:
        raise UnsafeArchiveError(f"unsafe path {name!r}")
    return norm
