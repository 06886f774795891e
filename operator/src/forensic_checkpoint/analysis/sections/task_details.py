"""Details of one task from its core image: credentials with capability names, and its seccomp
filters (CRIU keeps the filter chain in seccomp.img)."""

from __future__ import annotations

from typing import Any

from forensic_checkpoint.analysis.model.process import Credentials, Process, Seccomp

SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}


CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]


def capability_names(words: Any) -> list[str]:
    names = []
    for word_index, word in enumerate(words):
        for bit in range(32):
            if int(word) >> bit & 1:
                cap = word_index * 32 + bit
                names.append(CAPABILITIES[cap] if cap < len(CAPABILITIES) else f"CAP_{cap}")
    return names


def creds_and_seccomp(proc: Process, thread_core: Any, filters: list[Any]) -> None:
    if thread_core.HasField("creds"):
        c = thread_core.creds
        proc.credentials = Credentials(
            uid=int(c.uid),
            euid=int(c.euid),
            suid=int(c.suid),
            fsuid=int(c.fsuid),
            gid=int(c.gid),
            egid=int(c.egid),
            sgid=int(c.sgid),
            fsgid=int(c.fsgid),
            groups=[int(g) for g in c.groups],
            cap_effective=capability_names(c.cap_eff),
            cap_permitted=capability_names(c.cap_prm),
            cap_inheritable=capability_names(c.cap_inh),
            cap_bounding=capability_names(c.cap_bnd),
        )
    if thread_core.HasField("seccomp_mode"):
        proc.seccomp = _seccomp(thread_core, filters)


def _seccomp(thread_core: Any, filters: list[Any]) -> Seccomp:
    mode = int(thread_core.seccomp_mode)
    seccomp = Seccomp(mode=SECCOMP_MODES.get(mode, str(mode)))
    if mode == 2 and thread_core.HasField("seccomp_filter"):
        # seccomp_filter indexes seccomp.img's filter list (the innermost filter); each
        # filter's optional prev links to the one installed before it (criu/seccomp.c).
        index: int | None = int(thread_core.seccomp_filter)
        hops = 0
        while index is not None and 0 <= index < len(filters) and hops < len(filters):
            flt = filters[index]
            seccomp.filters += 1
            seccomp.filter_instructions += len(bytes(flt.filter)) // 8
            index = int(flt.prev) if flt.HasField("prev") else None
            hops += 1
    return seccomp
