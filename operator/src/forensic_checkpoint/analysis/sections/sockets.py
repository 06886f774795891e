"""Sockets and pipes of the report: inet, UNIX, netlink and packet sockets with their queues, and
pipes with their buffered data, each with the (pid, fd) pairs that hold it."""

from __future__ import annotations

import struct
from typing import Any, Literal

from forensic_checkpoint.analysis.format.criu_images import Image, try_decode
from forensic_checkpoint.analysis.model.process import Process
from forensic_checkpoint.analysis.model.report import Holder, Pipe, Socket
from forensic_checkpoint.analysis.sections.files import FileTable, queue_data, unix_name

AF_INET, AF_INET6 = 2, 10
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}


SOCK_TYPES = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 10: "packet"}


IP_PROTOS = {0: "ip", 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite"}


NETLINK_PROTOS = {0: "route", 4: "sock_diag", 9: "audit", 15: "kobject_uevent", 16: "generic"}


def inet_address(words: Any, family: int) -> str | None:
    """CRIU keeps addresses as u32 words in network byte order (4 words for IPv6)."""
    raw = b"".join(struct.pack("<I", int(w) & 0xFFFFFFFF) for w in words)
    if family == AF_INET6 and len(raw) == 16:
        import ipaddress  # only archives with IPv6 sockets pay for it

        address = ipaddress.IPv6Address(raw)
        mapped = address.ipv4_mapped
        return f"::ffff:{mapped}" if mapped is not None else address.compressed
    if len(raw) >= 4:
        return ".".join(str(b) for b in raw[:4])
    return None


def _holders(fd_map: dict[int, list[Holder]], file_id: int) -> list[Holder]:
    return sorted(fd_map.get(file_id, []), key=lambda h: (h.pid, h.fd))


def build_sockets(
    table: FileTable,
    data: dict[str, bytes],
    fd_map: dict[int, list[Holder]],
    warnings: list[str],
) -> list[Socket]:
    """Every socket in files.img with its holders, addresses, state and queued bytes."""
    queues: dict[int, list[bytes]] = {}
    skq = try_decode("SK_QUEUES", data.get("checkpoint/sk-queues.img"), "sk-queues.img", warnings)
    if skq:
        for entry, payload in zip(skq.entries, skq.payloads, strict=True):
            queues.setdefault(int(entry.id_for), []).append(payload)
    sockets: list[Socket] = []
    for file_id, entry in sorted(table.entries.items()):
        holders = _holders(fd_map, file_id)
        sock: Socket | None = None
        if entry.HasField("isk"):
            sock = _inet(entry.isk, data, warnings)
        elif entry.HasField("usk"):
            usk = entry.usk
            name = unix_name(bytes(usk.name))
            sock = Socket(
                id=file_id,
                inode=int(usk.ino),
                family="unix",
                type=SOCK_TYPES.get(int(usk.type), str(int(usk.type))),
                state=TCP_STATES.get(int(usk.state), str(int(usk.state))),
                local_address=name or None,
                peer_inode=int(usk.peer) or None,
            )
        elif entry.HasField("psk"):
            psk = entry.psk
            sock = Socket(
                id=file_id,
                family="packet",
                type=SOCK_TYPES.get(int(psk.type), str(int(psk.type))),
                protocol=f"0x{int(psk.protocol):04x}",
                local_address=f"ifindex {int(psk.ifindex)}",
            )
        elif entry.HasField("nlsk"):
            nlsk = entry.nlsk
            sock = Socket(
                id=file_id,
                inode=int(nlsk.ino),
                family="netlink",
                type="raw",
                protocol=NETLINK_PROTOS.get(int(nlsk.protocol), str(int(nlsk.protocol))),
                local_port=int(nlsk.portid),
            )
        if sock is None:
            continue
        sock.id = file_id
        sock.held_by = holders
        sock.pid = holders[0].pid if holders else None
        if file_id in queues and sock.receive_queue is None:
            sock.receive_queue = queue_data(b"".join(queues[file_id]))
        sockets.append(sock)
    return sockets


def _inet(isk: Any, data: dict[str, bytes], warnings: list[str]) -> Socket:
    family = int(isk.family)
    proto = IP_PROTOS.get(int(isk.proto), str(int(isk.proto)))
    state = TCP_STATES.get(int(isk.state), str(int(isk.state)))
    if proto == "udp":
        state = "ESTABLISHED" if int(isk.state) == 1 else "UNCONNECTED"
    sock = Socket(
        id=int(isk.id),
        inode=int(isk.ino),
        family="inet6" if family == AF_INET6 else "inet",
        type=SOCK_TYPES.get(int(isk.type), str(int(isk.type))),
        protocol=proto,
        state=state,
        local_address=inet_address(isk.src_addr, family),
        local_port=int(isk.src_port),
        remote_address=inet_address(isk.dst_addr, family),
        remote_port=int(isk.dst_port),
    )
    if isk.HasField("opts"):
        sock.send_buffer_bytes = int(isk.opts.so_sndbuf)
        sock.receive_buffer_bytes = int(isk.opts.so_rcvbuf)
    name = f"tcp-stream-{int(isk.ino):x}.img"
    stream = try_decode("TCP_STREAM", data.get(f"checkpoint/{name}"), name, warnings)
    if stream and stream.payloads:
        inq, outq = stream.payloads[0]
        sock.receive_queue = queue_data(inq)
        sock.send_queue = queue_data(outq)
    return sock


def build_pipes(
    table: FileTable,
    data: dict[str, bytes],
    fd_map: dict[int, list[Holder]],
    warnings: list[str],
) -> list[Pipe]:
    """Pipes and FIFOs grouped by inode, with the bytes that were still buffered."""
    buffered: dict[int, bytes] = {}
    for member, image_kind in (("pipes-data.img", "PIPES_DATA"), ("fifo-data.img", "FIFO_DATA")):
        image: Image | None = try_decode(
            image_kind, data.get(f"checkpoint/{member}"), member, warnings
        )
        if image:
            for entry, payload in zip(image.entries, image.payloads, strict=True):
                buffered[int(entry.pipe_id)] = buffered.get(int(entry.pipe_id), b"") + payload
    pipes: dict[int, Pipe] = {}
    for file_id, entry in sorted(table.entries.items()):
        if entry.HasField("pipe"):
            kind: Literal["pipe", "fifo"] = "pipe"
            inode, path = int(entry.pipe.pipe_id), None
        elif entry.HasField("fifo"):
            kind = "fifo"
            inode, path = int(entry.fifo.pipe_id), table.path(file_id)
        else:
            continue
        pipe = pipes.setdefault(inode, Pipe(id=inode, type=kind, path=path))
        pipe.held_by = sorted(
            [*pipe.held_by, *_holders(fd_map, file_id)], key=lambda h: (h.pid, h.fd)
        )
    for inode, blob in buffered.items():
        pipe = pipes.setdefault(inode, Pipe(id=inode))
        pipe.buffered = queue_data(blob)
    return [pipes[k] for k in sorted(pipes)]


def socket_label(sock: Socket) -> str:
    """How an fd on this socket reads in a process's file table, e.g.
    ``tcp 10.86.0.2:58112 -> 10.86.0.1:4444 ESTABLISHED`` or ``unix @ctl LISTEN``."""
    state = f" {sock.state}" if sock.state else ""
    if sock.family in ("inet", "inet6"):
        proto = sock.protocol or sock.family
        local = f"{sock.local_address}:{sock.local_port}"
        if sock.state == "LISTEN" or not sock.remote_port:
            return f"{proto} {local}{state}"
        return f"{proto} {local} -> {sock.remote_address}:{sock.remote_port}{state}"
    if sock.family == "unix":
        name = sock.local_address or f"socket:[{sock.inode}]"
        peer = f" -> peer {sock.peer_inode}" if sock.peer_inode else ""
        return f"unix {name}{peer}{state}"
    return f"{sock.family} {sock.protocol or sock.type}"


def label_socket_fds(processes: list[Process], sockets: list[Socket]) -> None:
    """Give socket fds their endpoints as path (crit and checkpointctl show 'INETSK.18')."""
    by_id = {s.id: s for s in sockets}
    for proc in processes:
        for item in proc.open_files:
            sock = by_id.get(item.file_id) if item.file_id is not None else None
            if sock is not None:
                item.path = socket_label(sock)
