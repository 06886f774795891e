"""Open files, sockets and pipes: files.img joined with fdinfo, remap, ghost and queue images.

CRIU keeps one ``file_entry`` per open file description in files.img; each process's fd table
(``fdinfo-<files_id>.img``) points at those ids. Deleted-but-open files are regular entries
whose id appears as ``orig_id`` in remap-fpath.img; a GHOST remap's content is in
``ghost-file-<remap_id in hex>.img``. Queued bytes live in tcp-stream-<ino hex>.img (TCP),
sk-queues.img (keyed by the socket's file id) and pipes-data.img (keyed by pipe inode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forensic_checkpoint.analysis.format.criu_images import try_decode
from forensic_checkpoint.analysis.model.process import GhostFile, OpenFile
from forensic_checkpoint.analysis.model.report import QueueData

FD_TYPES = {
    0: "UND",
    1: "REG",
    2: "PIPE",
    3: "FIFO",
    4: "INETSK",
    5: "UNIXSK",
    6: "EVENTFD",
    7: "EVENTPOLL",
    8: "INOTIFY",
    9: "SIGNALFD",
    10: "PACKETSK",
    11: "TTY",
    12: "FANOTIFY",
    13: "NETLINKSK",
    14: "NS",
    15: "TUNF",
    16: "EXT",
    17: "TIMERFD",
    18: "MEMFD",
    19: "BPFMAP",
    20: "PIDFD",
}
#: O_* flags worth naming (the access mode is the low two bits)
_OPEN_FLAGS = (
    (0o100, "O_CREAT"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o2000000, "O_CLOEXEC"),
    (0o20000000, "O_PATH"),
    (0o40000, "O_DIRECT"),
    (0o4010000, "O_SYNC"),
)
#: tty_info_entry.type (CRIU's images/tty.proto TtyType)
TTY_TYPES = {0: "UNKNOWN", 1: "PTY", 2: "CONSOLE", 3: "VT", 4: "CTTY", 5: "EXT_TTY", 6: "SERIAL"}
#: makedev(5, 2): /dev/ptmx
PTMX_RDEV = (5 << 8) | 2
GHOST_PREVIEW_BYTES = 4096
QUEUE_TEXT_BYTES = 4096
REMAP_GHOST = 1
REMAP_LINKED = 0
REMAP_PROCFS = 2


def tty_type_name(code: int) -> str:
    return TTY_TYPES.get(code, f"TYPE{code}")


def open_flags(flags: int) -> str:
    names = [("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[flags & 3]]
    names += [name for bit, name in _OPEN_FLAGS if flags & bit == bit]
    return "|".join(names)


def queue_data(data: bytes) -> QueueData:
    head = data[:QUEUE_TEXT_BYTES]
    text = head.decode("utf-8", "replace")
    printable = all(c.isprintable() or c in "\n\r\t" for c in text)
    return QueueData(
        size_bytes=len(data),
        text=text,
        hex=None if printable else head.hex(),
        truncated=len(data) > len(head),
    )


def unix_name(raw: bytes) -> str:
    """Abstract names (leading NUL) as '@name', the way ss(8) and /proc/net/unix show them."""
    if raw.startswith(b"\0"):
        return "@" + raw[1:].decode("utf-8", "backslashreplace").replace("\0", "@")
    return raw.rstrip(b"\0").decode("utf-8", "backslashreplace")


@dataclass
class FileTable:
    """files.img indexed by id, with the remaps, ghosts and memfd inodes that describe it."""

    entries: dict[int, Any] = field(default_factory=dict)
    #: file id -> (remap type, ghost image name or None)
    remaps: dict[int, tuple[int, str | None]] = field(default_factory=dict)
    ghosts: dict[str, tuple[Any, bytes]] = field(default_factory=dict)
    memfd_names: dict[int, str] = field(default_factory=dict)
    #: memfd inode id -> memfd_inode_entry (name, size, shmid)
    memfd_inodes: dict[int, Any] = field(default_factory=dict)
    #: tty-info.img id -> tty_info_entry (type, pty index, devpts device, rdev)
    tty_infos: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, data: dict[str, bytes], warnings: list[str]) -> FileTable:
        table = cls()
        files = try_decode("FILES", data.get("checkpoint/files.img"), "files.img", warnings)
        for entry in files.entries if files else []:
            table.entries[int(entry.id)] = entry
        remap = try_decode(
            "REMAP_FPATH", data.get("checkpoint/remap-fpath.img"), "remap-fpath.img", warnings
        )
        for entry in remap.entries if remap else []:
            rtype = int(entry.remap_type)
            ghost = None
            if rtype == REMAP_GHOST:
                ghost = f"checkpoint/ghost-file-{int(entry.remap_id) & 0x7FFFFFFF:x}.img"
            table.remaps[int(entry.orig_id)] = (rtype, ghost)
        for name, blob in data.items():
            if name.startswith("checkpoint/ghost-file-"):
                image = try_decode("GHOST_FILE", blob, name.rsplit("/", 1)[-1], warnings)
                if image and image.entries:
                    table.ghosts[name] = (image.entries[0], image.content)
        memfd = try_decode("MEMFD_INODE", data.get("checkpoint/memfd.img"), "memfd.img", warnings)
        for entry in memfd.entries if memfd else []:
            table.memfd_names[int(entry.inode_id)] = str(entry.name)
            table.memfd_inodes[int(entry.inode_id)] = entry
        ttys = try_decode("TTY_INFO", data.get("checkpoint/tty-info.img"), "tty-info.img", warnings)
        for entry in ttys.entries if ttys else []:
            table.tty_infos[int(entry.id)] = entry
        return table

    def type_name(self, file_id: int, fallback: int = 0) -> str:
        entry = self.entries.get(file_id)
        code = int(entry.type) if entry is not None else fallback
        return FD_TYPES.get(code, f"TYPE{code}")

    def path(self, file_id: int) -> str:
        """A human path for any file id (what crit x fds shows, with sockets rendered)."""
        entry = self.entries.get(file_id)
        if entry is None:
            return f"file#{file_id}"
        kind = FD_TYPES.get(int(entry.type), "UND")
        path = f"{kind.lower()}:[{file_id}]"
        if entry.HasField("reg"):
            path = str(entry.reg.name)
        elif entry.HasField("pipe"):
            path = f"pipe:[{int(entry.pipe.pipe_id)}]"
        elif entry.HasField("fifo"):
            # The FIFO's name is the regular-file entry it points at (never another FIFO).
            regf = self.entries.get(int(entry.fifo.regf_id))
            if regf is not None and regf.HasField("reg"):
                path = str(regf.reg.name)
        elif entry.HasField("memfd"):
            path = f"memfd:{self.memfd_names.get(int(entry.memfd.inode_id), '?')}"
        elif entry.HasField("tty"):
            # The terminal's device node as the process opened it: /dev/ptmx (or
            # /dev/pts/ptmx) for a pty's master, /dev/pts/<n> for its slave.
            regf = self.entries.get(int(entry.tty.regf_id))
            if regf is not None and regf.HasField("reg"):
                path = str(regf.reg.name)
        elif entry.HasField("usk"):
            name = unix_name(bytes(entry.usk.name))
            path = f"unix:{name}" if name else f"socket:[{int(entry.usk.ino)}]"
        elif entry.HasField("isk"):
            path = f"socket:[{int(entry.isk.ino)}]"
        elif entry.HasField("nlsk"):
            path = f"socket:[{int(entry.nlsk.ino)}]"
        return path

    def open_file(self, fd: int | str, file_id: int, fd_type: int = 0) -> OpenFile:
        entry = self.entries.get(file_id)
        kind = self.type_name(file_id, fd_type)
        item = OpenFile(fd=fd, type=kind, path=self.path(file_id), file_id=file_id)
        if entry is None:
            return item
        if entry.HasField("reg"):
            reg = entry.reg
            item.flags = open_flags(int(reg.flags))
            item.position = int(reg.pos)
            if reg.HasField("mode"):
                item.mode = oct(int(reg.mode))
            if reg.HasField("size"):
                item.size_bytes = int(reg.size)
            self._mark_deleted(item, file_id)
        elif entry.HasField("memfd"):
            item.flags = open_flags(int(entry.memfd.flags))
            item.position = int(entry.memfd.pos)
        elif entry.HasField("pipe"):
            item.flags = open_flags(int(entry.pipe.flags))
        elif entry.HasField("tty"):
            item.flags = open_flags(int(entry.tty.flags))
            self._mark_pty(item, int(entry.tty.tty_info_id))
        return item

    def _mark_pty(self, item: OpenFile, info_id: int) -> None:
        info = self.tty_infos.get(info_id)
        if info is None or str(tty_type_name(int(info.type))) != "PTY" or not info.HasField("pty"):
            return
        item.pty = f"{int(info.dev)}:{int(info.pty.index)}"
        # The master is the ptmx device (char 5:2); every slave is a /dev/pts/<n> node.
        item.pty_master = int(info.rdev) == PTMX_RDEV or item.path.endswith("ptmx")

    def _mark_deleted(self, item: OpenFile, file_id: int) -> None:
        remap = self.remaps.get(file_id)
        if remap is None:
            return
        rtype, ghost_name = remap
        if rtype == REMAP_PROCFS:
            return
        item.deleted = True
        if ghost_name and ghost_name in self.ghosts:
            ghost_entry, content = self.ghosts[ghost_name]
            preview = content[:GHOST_PREVIEW_BYTES]
            mode = int(ghost_entry.mode)
            item.ghost = GhostFile(
                image=ghost_name,
                size_bytes=len(content),
                mode=oct(mode) if mode else None,
                preview=preview.decode("utf-8", "replace"),
                truncated=len(content) > len(preview),
            )
            if item.size_bytes is None:
                item.size_bytes = len(content)

    def ghost_content(self, path: str) -> bytes | None:
        """Content of the deleted-but-open file that was open as ``path`` (show-file)."""
        for file_id, (rtype, ghost_name) in self.remaps.items():
            entry = self.entries.get(file_id)
            if (
                rtype == REMAP_GHOST
                and ghost_name in self.ghosts
                and entry is not None
                and entry.HasField("reg")
                and str(entry.reg.name) == path
            ):
                return self.ghosts[ghost_name][1]
        return None
