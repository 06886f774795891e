"""Whether a kubelet archive has been written to its end.

The runtime writes the archive straight to its final path (containerd and CRI-O both stream a
tar there), so a file the agent finds after a restart or a give-up may still be growing. A size
that stops changing for a moment is no proof: a runtime stalled on a 2 GiB page file looks the
same. A tar is complete when its headers chain from the first block to the end-of-archive
marker (two zero blocks) and nothing but zero padding follows. Walking the headers reads one
512-byte block per member, so this costs the same for 10 MiB and for 2 GiB.
"""

from __future__ import annotations

from pathlib import Path

BLOCK = 512


def is_complete_tar(path: Path) -> bool:
    """True when ``path`` is a whole tar archive with at least one member: every member's data
    present and the end-of-archive marker written (a file of zeros is no archive)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            offset = members = 0
            while offset + BLOCK <= size:
                f.seek(offset)
                header = f.read(BLOCK)
                if header == bytes(BLOCK):
                    # The end marker is two zero blocks; only zero padding may follow.
                    f.seek(offset)
                    rest = f.read()
                    return members > 0 and len(rest) >= 2 * BLOCK and not any(rest)
                length = _member_size(header)
                if length is None:
                    return False
                members += 1
                offset += BLOCK + -(-length // BLOCK) * BLOCK
            return False
    except OSError:
        return False


def _member_size(header: bytes) -> int | None:
    """The data size of the member whose header this is; None for a block that is no header."""
    stored = header[148:156]
    try:
        checksum = int(stored.replace(b"\0", b" ").strip() or b"0", 8)
    except ValueError:
        return None
    if checksum != sum(header[:148]) + 8 * 0x20 + sum(header[156:]):
        return None
    field = header[124:136]
    if field[0] & 0x80:  # base-256 (GNU) for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.replace(b"\0", b" ").strip() or b"0", 8)
    except ValueError:
        return None
