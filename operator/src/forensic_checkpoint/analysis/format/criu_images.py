"""Decoding CRIU images with pycriu's generated protobuf classes.

``pycriu.images.load`` turns every entry into a dict and imports all 60 message modules
(~0.1 s); the analyzer needs a dozen images and keeps the protobuf messages as they are. The
generated ``*_pb2`` modules import each other by bare name, so their directory goes on
``sys.path`` exactly as ``pycriu.images`` itself does; they are imported only when an image of
that type is decoded. With protobuf's upb backend the message classes come straight from a
private upb pool fed with the serialized descriptors embedded in those modules
(``message_class``): executing the modules costs ~35 ms of a short ``search`` process, mostly
protobuf's pure-Python ``builder`` machinery they import.

Image layout (criu/include/magic.h, images/*.proto): ``IMG_COMMON`` or ``IMG_SERVICE`` magic,
the image's own magic (both u32 LE), then ``<u32 LE size><protobuf>`` entries, some followed by
raw payload bytes (queue data, pipe data, ghost file chunks).
"""

from __future__ import annotations

import codecs
import importlib
import importlib.util
import re
import struct
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from forensic_checkpoint.errors import ImageError

IMG_COMMON = 0x54564319
IMG_SERVICE = 0x55105940

#: image kind (pycriu magic name) -> (pb2 module, message name, payload kind)
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
}

#: Bounds for one image: real ones hold thousands of entries and ghost files are what CRIU
#: agreed to copy (--ghost-limit, 1 MiB by default); a hostile image gets an ImageError.
MAX_ENTRIES = 500_000
MAX_GHOST_BYTES = 64 << 20

_lock = threading.Lock()
_modules: dict[str, ModuleType] = {}
_magics: dict[str, int] | None = None


def _pb2_dir() -> Path:
    spec = importlib.util.find_spec("pycriu")  # finds the package without running __init__
    if spec is None or spec.origin is None:
        raise ImageError("pycriu is not installed (Debian package 'criu'); run `make setup`")
    return Path(spec.origin).parent / "images"


def pb2(module: str) -> ModuleType:
    """Import one generated pycriu module (thread-safe; the agent analyses in threads)."""
    mod = _modules.get(module)
    if mod is not None:
        return mod
    with _lock:
        if module not in _modules:
            directory = str(_pb2_dir())
            if directory not in sys.path:
                sys.path.append(directory)
            _modules[module] = importlib.import_module(module)
        return _modules[module]


#: ``AddSerializedFile(b'...')`` in a generated module, and the modules it imports
_SERIALIZED = re.compile(rb"AddSerializedFile\((b'(?:[^'\\]|\\.)*')\)")
_PB2_IMPORT = re.compile(
    rb"^(?:import (\w+_pb2) as|from google\.protobuf import (\w+_pb2) as)", re.M
)
_upb_pool: Any = None
_upb_files: set[str] = set()
_classes: dict[tuple[str, str], type[Any]] = {}


def _serialized_descriptor(source: bytes, module: str) -> bytes:
    found = _SERIALIZED.search(source)
    if found is None:
        raise ImageError(f"{module}: no serialized descriptor in the generated module")
    escaped = found.group(1)[2:-1]  # the literal's body, between b' and '
    return bytes(codecs.escape_decode(escaped)[0])


def _module_source(module: str) -> bytes:
    if module == "descriptor_pb2":  # the one google.protobuf dependency (opts.proto)
        spec = importlib.util.find_spec("google.protobuf")
        if spec is None or not spec.submodule_search_locations:  # pragma: no cover
            raise ImageError("google.protobuf is not installed")
        return (
            Path(next(iter(spec.submodule_search_locations))) / "descriptor_pb2.py"
        ).read_bytes()
    return (_pb2_dir() / f"{module}.py").read_bytes()


def _add_to_pool(pool: Any, module: str) -> None:
    """Add ``module``'s descriptor to the pool, its dependencies first (called under _lock)."""
    if module in _upb_files:
        return
    _upb_files.add(module)
    source = _module_source(module)
    for plain, google in _PB2_IMPORT.findall(source):
        _add_to_pool(pool, (plain or google).decode())
    pool.AddSerializedFile(_serialized_descriptor(source, module))


def message_class(module: str, message: str) -> type[Any]:
    """The class of top-level ``message`` of a pycriu ``*_pb2`` module (thread-safe)."""
    cls = _classes.get((module, message))
    if cls is not None:
        return cls
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() != "upb":
        found: type[Any] = getattr(pb2(module), message)
        return found
    from google._upb import _message as upb
    from google.protobuf.message import Message

    global _upb_pool  # noqa: PLW0603 - a process-wide cache, like _modules
    with _lock:
        if _upb_pool is None:
            _upb_pool = upb.DescriptorPool()
        try:
            _add_to_pool(_upb_pool, module)
            descriptor = _upb_pool.FindMessageTypeByName(message)
        except (OSError, TypeError, KeyError) as exc:
            raise ImageError(f"{module}.{message}: cannot load its descriptor: {exc}") from exc
        namespace = {"DESCRIPTOR": descriptor, "__module__": module}
        cls = upb.MessageMeta(message, (Message,), namespace)
        _classes[(module, message)] = cls
        return cls


def magic_values() -> dict[str, int]:
    """magic name -> value, from pycriu's generated table (criu/include/magic.h)."""
    global _magics  # noqa: PLW0603 - a process-wide cache of a constant table
    if _magics is None:
        spec = importlib.util.spec_from_file_location(
            "_forensic_checkpoint_criu_magic", _pb2_dir() / "magic.py"
        )
        if spec is None or spec.loader is None:  # pragma: no cover - file ships with pycriu
            return {}
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _magics = dict(module.by_name)
    return _magics


@dataclass
class Image:
    """Decoded entries of one image, with the raw payload that follows some of them."""

    kind: str
    entries: list[Any] = field(default_factory=list)
    #: per entry: payload bytes (queues, pipe data) or (inq, outq) for TCP streams
    payloads: list[Any] = field(default_factory=list)
    #: ghost files: the file's content
    content: bytes = b""


def decode(kind: str, data: bytes, name: str = "") -> Image:
    """Decode ``data`` as image ``kind``; raise ImageError with a one-line reason if it is not."""
    module, message, payload = IMAGE_TYPES[kind]
    magic = magic_values()[kind]
    label = name or kind
    if len(data) < 4:
        raise ImageError(f"{label}: too short for a CRIU image ({len(data)} bytes)")
    off = 0
    (first,) = struct.unpack_from("<I", data, 0)
    off = 4
    if first in (IMG_COMMON, IMG_SERVICE):
        if len(data) < 8:
            raise ImageError(f"{label}: truncated image header")
        (first,) = struct.unpack_from("<I", data, 4)
        off = 8
    if first != magic:
        found = next((k for k, v in magic_values().items() if v == first), f"{first:#x}")
        raise ImageError(f"{label}: wrong magic {found}, expected {kind}")
    cls = message_class(module, message)
    image = Image(kind=kind)
    try:
        if payload == "ghost":
            _decode_ghost(image, cls, data, off, label)
            return image
        while off < len(data):
            if len(image.entries) >= MAX_ENTRIES:
                raise ImageError(f"{label}: more than {MAX_ENTRIES} entries")
            entry, off = _entry(cls, data, off, label)
            image.entries.append(entry)
            if payload == "tcp":
                inq, off = _take(data, off, int(entry.inq_len), label)
                outq, off = _take(data, off, int(entry.outq_len), label)
                image.payloads.append((inq, outq))
            elif payload is not None:
                blob, off = _take(data, off, int(getattr(entry, payload)), label)
                image.payloads.append(blob)
    except ImageError:
        raise
    except Exception as exc:  # protobuf DecodeError and friends: damaged bytes
        raise ImageError(f"{label}: damaged protobuf entry: {exc}".splitlines()[0]) from exc
    return image


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


def crit_json(name: str, data: bytes) -> object:
    """The whole image as crit renders it (``pycriu.images.load``, pretty), for ``show-file``."""
    import io

    from pycriu import images

    try:
        return images.load(io.BytesIO(data), pretty=True)
    except Exception as exc:  # pycriu raises bare Exception, struct.error, MagicException
        raise ImageError(f"{name} is not a decodable CRIU image: {type(exc).__name__}") from exc


def checkpoint_image(
    data: Mapping[str, bytes], kind: str, base: str, warnings: list[str]
) -> Image | None:
    """The image ``checkpoint/<base>`` of the kept members, decoded as ``kind`` (None, with a
    warning, when it is damaged; None when it is absent)."""
    return try_decode(kind, data.get(f"checkpoint/{base}"), base, warnings)


def first_entry(image: Image | None) -> Any:
    """The one entry of a single-entry image (core, mm, ids, fs, ...), or None."""
    return image.entries[0] if image and image.entries else None
