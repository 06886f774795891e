"""Decoding CRIU images: the file framing, with the messages generated from CRIU's protos.

Image layout (criu/include/magic.h, images/*.proto): ``IMG_COMMON`` or ``IMG_SERVICE`` magic,
the image's own magic (both u32 LE), then ``<u32 LE size><protobuf>`` entries, some followed by
raw payload bytes (queue data, pipe data, ghost file chunks, IPC objects, BPF map data). Every
image type crit knows decodes here (``IMAGE_TYPES``); what cannot be decoded raises ImageError,
never a silent gap. pycriu is not needed: it is only a cross-check in the tests.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from forensic_checkpoint.analysis.format.criu_magic import BY_VALUE, IMG_COMMON, IMG_SERVICE, MAGICS
from forensic_checkpoint.analysis.format.criu_messages import message_class, pb2
from forensic_checkpoint.errors import ImageError

__all__ = ["IMAGE_TYPES", "Image", "decode", "decode_any", "magic_values", "message_class", "pb2"]

#: image kind (magic name) -> (generated module, message name, payload rule); the payload
#: rules are those of CRIU's writers (and crit's readers): see ``_payload``
IMAGE_TYPES: dict[str, tuple[str, str, str | None]] = {
    "INVENTORY": ("inventory_pb2", "inventory_entry", None),
    "PSTREE": ("pstree_pb2", "pstree_entry", None),
    "CORE": ("core_pb2", "core_entry", None),
    "IDS": ("core_pb2", "task_kobj_ids_entry", None),
    "MM": ("mm_pb2", "mm_entry", None),
    "FDINFO": ("fdinfo_pb2", "fdinfo_entry", None),
    "FILES": ("fdinfo_pb2", "file_entry", None),
    "FS": ("fs_pb2", "fs_entry", None),
    "UTSNS": ("utsns_pb2", "utsns_entry", None),
    "MNTS": ("mnt_pb2", "mnt_entry", None),
    "REMAP_FPATH": ("remap_file_path_pb2", "remap_file_path_entry", None),
    "GHOST_FILE": ("ghost_file_pb2", "ghost_file_entry", "ghost"),
    "TCP_STREAM": ("tcp_stream_pb2", "tcp_stream_entry", "tcp"),
    "SK_QUEUES": ("sk_packet_pb2", "sk_packet_entry", "length"),
    "PIPES_DATA": ("pipe_data_pb2", "pipe_data_entry", "bytes"),
    "FIFO_DATA": ("pipe_data_pb2", "pipe_data_entry", "bytes"),
    "SECCOMP": ("seccomp_pb2", "seccomp_entry", None),
    "STATS": ("stats_pb2", "stats_entry", None),
    "MEMFD_INODE": ("memfd_pb2", "memfd_inode_entry", None),
    "NETNS": ("netdev_pb2", "netns_entry", None),
    "TTY_INFO": ("tty_pb2", "tty_info_entry", None),
    "TTY_DATA": ("tty_pb2", "tty_data_entry", None),
    "TIMENS": ("timens_pb2", "timens_entry", None),
    "PIDNS": ("pidns_pb2", "pidns_entry", None),
    "CGROUP": ("cgroup_pb2", "cgroup_entry", None),
    # The rest: read by `show-file --decode` and the cross-check against pycriu.
    "PAGEMAP": ("pagemap_pb2", "pagemap_entry", "pagemap"),
    "CREDS": ("creds_pb2", "creds_entry", None),
    "IPC_VAR": ("ipc_var_pb2", "ipc_var_entry", None),
    "REG_FILES": ("regfile_pb2", "reg_file_entry", None),
    "NS_FILES": ("ns_pb2", "ns_file_entry", None),
    "EVENTFD_FILE": ("eventfd_pb2", "eventfd_file_entry", None),
    "EVENTPOLL_FILE": ("eventpoll_pb2", "eventpoll_file_entry", None),
    "EVENTPOLL_TFD": ("eventpoll_pb2", "eventpoll_tfd_entry", None),
    "SIGNALFD": ("signalfd_pb2", "signalfd_entry", None),
    "TIMERFD": ("timerfd_pb2", "timerfd_entry", None),
    "INOTIFY_FILE": ("fsnotify_pb2", "inotify_file_entry", None),
    "INOTIFY_WD": ("fsnotify_pb2", "inotify_wd_entry", None),
    "FANOTIFY_FILE": ("fsnotify_pb2", "fanotify_file_entry", None),
    "FANOTIFY_MARK": ("fsnotify_pb2", "fanotify_mark_entry", None),
    "VMAS": ("vma_pb2", "vma_entry", None),
    "PIPES": ("pipe_pb2", "pipe_entry", None),
    "FIFO": ("fifo_pb2", "fifo_entry", None),
    "SIGACT": ("sa_pb2", "sa_entry", None),
    "NETLINK_SK": ("sk_netlink_pb2", "netlink_sk_entry", None),
    "TTY_FILES": ("tty_pb2", "tty_file_entry", None),
    "RLIMIT": ("rlimit_pb2", "rlimit_entry", None),
    "TUNFILE": ("tun_pb2", "tunfile_entry", None),
    "EXT_FILES": ("ext_file_pb2", "ext_file_entry", None),
    "IRMAP_CACHE": ("fh_pb2", "irmap_cache_entry", None),
    "FILE_LOCKS": ("file_lock_pb2", "file_lock_entry", None),
    "UNIXSK": ("sk_unix_pb2", "unix_sk_entry", None),
    "INETSK": ("sk_inet_pb2", "inet_sk_entry", None),
    "PACKETSK": ("packet_sock_pb2", "packet_sock_entry", None),
    "ITIMERS": ("timer_pb2", "itimer_entry", None),
    "POSIX_TIMERS": ("timer_pb2", "posix_timer_entry", None),
    "NETDEV": ("netdev_pb2", "net_device_entry", None),
    "IPCNS_SHM": ("ipc_shm_pb2", "ipc_shm_entry", "ipc_shm"),
    "IPCNS_SEM": ("ipc_sem_pb2", "ipc_sem_entry", "ipc_sem"),
    "IPCNS_MSG": ("ipc_msg_pb2", "ipc_msg_entry", "ipc_msg"),
    "USERNS": ("userns_pb2", "userns_entry", None),
    "AUTOFS": ("autofs_pb2", "autofs_entry", None),
    "CPUINFO": ("cpuinfo_pb2", "cpuinfo_entry", None),
    "BPFMAP_FILE": ("bpfmap_file_pb2", "bpfmap_file_entry", None),
    "BPFMAP_DATA": ("bpfmap_data_pb2", "bpfmap_data_entry", "bpfmap"),
    "APPARMOR": ("apparmor_pb2", "apparmor_entry", None),
    "PIDFD": ("pidfd_pb2", "pidfd_entry", None),
}

#: Bounds for one image: real ones hold thousands of entries and ghost files are what CRIU
#: agreed to copy (--ghost-limit, 1 MiB by default); a hostile image gets an ImageError.
MAX_ENTRIES = 500_000
MAX_GHOST_BYTES = 64 << 20


def magic_values() -> dict[str, int]:
    """magic name -> value (criu/include/magic.h)."""
    return MAGICS


@dataclass
class Image:
    """Decoded entries of one image, with the raw payload that follows some of them."""

    kind: str
    entries: list[Any] = field(default_factory=list)
    #: per entry: payload bytes (queues, pipe data) or (inq, outq) for TCP streams
    payloads: list[Any] = field(default_factory=list)
    #: ghost files: the file's content, and the chunk records it was written as (if any)
    content: bytes = b""
    chunks: list[tuple[Any, bytes]] = field(default_factory=list)


def _body(data: bytes, label: str) -> tuple[str, int]:
    """The image's kind (magic name) and where its first entry starts."""
    if len(data) < 4:
        raise ImageError(f"{label}: too short for a CRIU image ({len(data)} bytes)")
    (first,) = struct.unpack_from("<I", data, 0)
    off = 4
    if first in (IMG_COMMON, IMG_SERVICE):
        if len(data) < 8:
            raise ImageError(f"{label}: truncated image header")
        (first,) = struct.unpack_from("<I", data, 4)
        off = 8
    kind = BY_VALUE.get(first)
    if kind is None:
        raise ImageError(f"{label}: unknown CRIU image magic {first:#x}")
    return kind, off


def decode_any(data: bytes, name: str = "") -> Image:
    """Decode an image of whatever type its magic names (``show-file --decode``)."""
    kind, _ = _body(data, name or "image")
    if kind not in IMAGE_TYPES:
        raise ImageError(f"{name or 'image'}: {kind} images cannot be decoded")
    return decode(kind, data, name)


def decode(kind: str, data: bytes, name: str = "") -> Image:
    """Decode ``data`` as image ``kind``; raise ImageError with a one-line reason if it is not."""
    module, message, payload = IMAGE_TYPES[kind]
    label = name or kind
    found, off = _body(data, label)
    if found != kind:
        raise ImageError(f"{label}: wrong magic {found}, expected {kind}")
    cls = message_class(module, message)
    image = Image(kind=kind)
    try:
        if payload == "ghost":
            _decode_ghost(image, cls, data, off, label)
            return image
        if payload == "pagemap":  # a pagemap_head, then pagemap_entry records
            head, off = _entry(message_class(module, "pagemap_head"), data, off, label)
            image.entries.append(head)
        while off < len(data):
            if len(image.entries) >= MAX_ENTRIES:
                raise ImageError(f"{label}: more than {MAX_ENTRIES} entries")
            entry, off = _entry(cls, data, off, label)
            image.entries.append(entry)
            if payload is not None and payload != "pagemap":
                extra, off = _payload(payload, entry, data, off, label)
                image.payloads.append(extra)
    except ImageError:
        raise
    except Exception as exc:  # protobuf DecodeError and friends: damaged bytes
        raise ImageError(f"{label}: damaged protobuf entry: {exc}".splitlines()[0]) from exc
    return image


def _padded(data: bytes, off: int, size: int, align: int, label: str) -> tuple[bytes, int]:
    """``size`` bytes that CRIU padded to a multiple of ``align``."""
    _, end = _take(data, off, (size + align - 1) // align * align, label)
    return data[off : off + size], end


def _payload(rule: str, entry: Any, data: bytes, off: int, label: str) -> tuple[Any, int]:
    """The raw bytes CRIU writes after an entry, by the image type's rule."""
    if rule == "tcp":  # the unread receive queue, then the unsent send queue
        inq, off = _take(data, off, int(entry.inq_len), label)
        outq, off = _take(data, off, int(entry.outq_len), label)
        return (inq, outq), off
    if rule == "bpfmap":  # the map's keys, then its values
        return _take(data, off, int(entry.keys_bytes) + int(entry.values_bytes), label)
    if rule == "ipc_shm":  # the segment, padded to 4 bytes
        return _padded(data, off, int(entry.size), 4, label)
    if rule == "ipc_sem":  # nsems u16 values, padded to 8 bytes
        return _padded(data, off, 2 * int(entry.nsems), 8, label)
    if rule == "ipc_msg":  # qnum times: an ipc_msg record, then msize bytes padded to 8
        messages = []
        msg_cls = message_class("ipc_msg_pb2", "ipc_msg")
        for _ in range(int(entry.qnum)):
            msg, off = _entry(msg_cls, data, off, label)
            blob, off = _padded(data, off, int(msg.msize), 8, label)
            messages.append((msg, blob))
        return messages, off
    return _take(data, off, int(getattr(entry, rule)), label)  # "bytes", "length"


def _entry(cls: Any, data: bytes, off: int, label: str) -> tuple[Any, int]:
    if off + 4 > len(data):
        raise ImageError(f"{label}: truncated entry size at byte {off}")
    (size,) = struct.unpack_from("<I", data, off)
    off += 4
    if size > len(data) - off:
        raise ImageError(f"{label}: entry of {size} bytes runs past the end at byte {off}")
    entry = cls()
    entry.ParseFromString(data[off : off + size])
    return entry, off + size


def _take(data: bytes, off: int, size: int, label: str) -> tuple[bytes, int]:
    if size < 0 or size > len(data) - off:
        raise ImageError(f"{label}: payload of {size} bytes runs past the end")
    return data[off : off + size], off + size


def _decode_ghost(image: Image, cls: Any, data: bytes, off: int, label: str) -> None:
    entry, off = _entry(cls, data, off, label)
    image.entries.append(entry)
    if not entry.chunks:
        image.content = data[off:]
        return
    chunk_cls = message_class("ghost_file_pb2", "ghost_chunk_entry")
    parts: list[bytes] = []
    total = 0
    while off < len(data):
        chunk, off = _entry(chunk_cls, data, off, label)
        blob, off = _take(data, off, int(chunk.len), label)
        # Chunks hold the non-hole parts of a sparse file; holes read as zeros.
        gap = int(chunk.off) - total
        if total + max(gap, 0) + len(blob) > MAX_GHOST_BYTES:
            raise ImageError(f"{label}: ghost file content exceeds {MAX_GHOST_BYTES} bytes")
        if gap > 0:
            parts.append(b"\0" * gap)
            total += gap
        image.chunks.append((chunk, blob))
        parts.append(blob)
        total += len(blob)
    image.content = b"".join(parts)


def try_decode(kind: str, data: bytes | None, name: str, warnings: list[str]) -> Image | None:
    """Decode, turning ImageError into a warning (analysis goes on without the image)."""
    if data is None:
        return None
    try:
        return decode(kind, data, name)
    except ImageError as exc:
        warnings.append(exc.message)
        return None


def checkpoint_image(
    data: Mapping[str, bytes], kind: str, base: str, warnings: list[str]
) -> Image | None:
    """The image ``checkpoint/<base>`` of the kept members, decoded as ``kind`` (None, with a
    warning, when it is damaged; None when it is absent)."""
    return try_decode(kind, data.get(f"checkpoint/{base}"), base, warnings)


def first_entry(image: Image | None) -> Any:
    """The one entry of a single-entry image (core, mm, ids, fs, ...), or None."""
    return image.entries[0] if image and image.entries else None
