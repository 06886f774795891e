"""Namespaces of the tasks: UTS names (the hostname), external network namespaces and the mount
table of each mount namespace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forensic_checkpoint.analysis.format.criu_images import (
    checkpoint_image,
    first_entry,
    try_decode,
)
from forensic_checkpoint.analysis.model.report import Mount, Namespace

#: (namespace type, its id field in ids-<pid>.img)
NS_FIELDS = (
    ("pid", "pid_ns_id"),
    ("net", "net_ns_id"),
    ("ipc", "ipc_ns_id"),
    ("uts", "uts_ns_id"),
    ("mnt", "mnt_ns_id"),
    ("user", "user_ns_id"),
    ("cgroup", "cgroup_ns_id"),
    ("time", "time_ns_id"),
)


@dataclass
class NamespaceDetails:
    """What the namespace images add to the tree: the mounts and the host name."""

    mounts: list[Mount] = field(default_factory=list)
    hostname: str | None = None
    domainname: str | None = None


def _fstype(mount: Any) -> str:
    if mount.HasField("fsname") and mount.fsname:
        return str(mount.fsname)
    enum = mount.DESCRIPTOR.file.enum_types_by_name.get("fstype")
    value = enum.values_by_number.get(int(mount.fstype)) if enum is not None else None
    name = value.name.lower() if value is not None else str(int(mount.fstype))
    return {"overlayfs": "overlay", "unsupported": "other"}.get(name, name)


def _mount(m: Any) -> Mount:
    return Mount(
        mountpoint=str(m.mountpoint),
        fstype=_fstype(m),
        source=str(m.source),
        root=str(m.root),
        options=str(m.options) or None,
        external=str(m.ext_key) if m.HasField("ext_key") else None,
        origin="criu",
    )


def _uts(ns: Namespace, out: NamespaceDetails, data: dict[str, bytes], warnings: list[str]) -> None:
    uts = first_entry(checkpoint_image(data, "UTSNS", f"utsns-{ns.id}.img", warnings))
    if uts is None:
        return
    ns.details = {"nodename": str(uts.nodename), "domainname": str(uts.domainname)}
    if out.hostname is None:
        out.hostname = str(uts.nodename)
        out.domainname = str(uts.domainname)


def _any_uts(out: NamespaceDetails, data: dict[str, bytes], warnings: list[str]) -> None:
    """The UTS image is named after the namespace id; some runtimes share it with a pod
    sandbox, so take any utsns image when the ids do not lead to one."""
    for name, blob in sorted(data.items()):
        if name.startswith("checkpoint/utsns-"):
            uts = first_entry(try_decode("UTSNS", blob, name.rsplit("/", 1)[-1], warnings))
            if uts is not None:
                out.hostname = str(uts.nodename)
                out.domainname = str(uts.domainname)
                return


def namespace_details(
    namespaces: list[Namespace], data: dict[str, bytes], warnings: list[str]
) -> NamespaceDetails:
    """Fill each namespace's ``details``; return the mounts and the host name."""
    out = NamespaceDetails()
    for ns in namespaces:
        if ns.type == "uts":
            _uts(ns, out, data, warnings)
        elif ns.type == "net":
            net = first_entry(checkpoint_image(data, "NETNS", f"netns-{ns.id}.img", warnings))
            if net is not None and net.HasField("ext_key"):
                ns.details = {"external": str(net.ext_key)}
        elif ns.type == "mnt":
            mnts = checkpoint_image(data, "MNTS", f"mountpoints-{ns.id}.img", warnings)
            out.mounts.extend(_mount(m) for m in (mnts.entries if mnts else []))
    if out.hostname is None:
        _any_uts(out, data, warnings)
    return out
