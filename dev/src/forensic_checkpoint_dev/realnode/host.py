"""What a real node changes on the machine beyond its own directories, and how it is undone:
iptables chains, ipsets (kube-router's firewall), mounts, the CRIU configuration the agent
writes, the kubelet's cgroups."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

BRIDGE = "fcp0"
POD_SUBNET = "10.88.0.0/16"
#: A runc reads its CRIU options here; the agent writes it (criuConfig) and owns what it wrote.
CRIU_CONFIG = Path("/etc/criu/runc.conf")
CRIU_CONFIG_MARK = "# Written by the forensic-checkpoint agent"
#: iptables tables whose chains a kubelet, CNI's portmap/bridge or kube-proxy may add.
TABLES = ("filter", "nat", "mangle")
CHAIN_PREFIXES = ("KUBE-", "CNI-")


def mounts_below(roots: Sequence[Path]) -> list[str]:
    prefixes = [str(r) for r in roots]
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            target = line.split()[1].replace("\\040", " ")
            if any(target == p or target.startswith(p + "/") for p in prefixes):
                mounts.append(target)
    return mounts


def unmount_below(roots: Sequence[Path]) -> list[str]:
    for _ in range(3):
        mounts = mounts_below(roots)
        if not mounts:
            return []
        for target in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
        time.sleep(0.1)
    return [f"mount {m} could not be removed" for m in mounts_below(roots)]


def chains() -> list[str]:
    """Every KUBE-/CNI- chain now, as ``table/chain``."""
    chains = []
    for table in TABLES:
        try:
            out = subprocess.run(
                ["iptables", "-w", "5", "-t", table, "-S"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "-N" and parts[1].startswith(CHAIN_PREFIXES):
                chains.append(f"{table}/{parts[1]}")
    return chains


def remove_chains(before: Sequence[str]) -> list[str]:
    """Drop the rules that jump to our chains, then the chains themselves."""
    ours = [c for c in chains() if c not in before]
    for entry in ours:
        table, chain = entry.split("/", 1)
        rules = subprocess.run(
            ["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True, check=False
        ).stdout
        for rule in rules.splitlines():
            parts = shlex.split(rule)  # kube-proxy's rules carry quoted comments
            if parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] == chain:
                subprocess.run(
                    ["iptables", "-w", "5", "-t", table, "-D", *parts[1:]],
                    capture_output=True,
                    check=False,
                )
    for entry in ours:
        table, chain = entry.split("/", 1)
        subprocess.run(
            ["iptables", "-w", "5", "-t", table, "-F", chain], capture_output=True, check=False
        )
    for entry in ours:
        table, chain = entry.split("/", 1)
        subprocess.run(
            ["iptables", "-w", "5", "-t", table, "-X", chain], capture_output=True, check=False
        )
    return [f"iptables chain {c} could not be removed" for c in chains() if c not in before]


def ipsets() -> list[str]:
    """The name of every ipset now (none without the ipset tool)."""
    try:
        out = subprocess.run(
            ["ipset", "list", "-n"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return out.split()


def remove_ipsets(before: Sequence[str]) -> list[str]:
    """Destroy the ipsets not in ``before`` (no rule may name them any more)."""
    for name in ipsets():
        if name not in before:
            subprocess.run(["ipset", "destroy", name], capture_output=True, check=False)
    return [f"ipset {s} could not be removed" for s in ipsets() if s not in before]


def written_by_agent(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace").startswith(CRIU_CONFIG_MARK)
    return False


def remove_criu_config(*, keep_dir: bool) -> None:
    """The agent's CRIU config (a killed agent cannot remove it), and the directory when the
    agent created it for that file."""
    if written_by_agent(CRIU_CONFIG):
        CRIU_CONFIG.unlink()
    if not keep_dir:
        with contextlib.suppress(OSError):
            CRIU_CONFIG.parent.rmdir()  # only when empty: someone else's files stay


def remove_cgroups() -> None:
    """The kubelet's ``kubepods`` hierarchy, bottom-up, in every v1 controller and in v2."""
    root = Path("/sys/fs/cgroup")
    for top in list(root.glob("*/kubepods")) + list(root.glob("kubepods")):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
