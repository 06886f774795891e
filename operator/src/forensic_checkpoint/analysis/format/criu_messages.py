"""The message classes of CRIU's images, from the modules generated at build time.

``criu_proto/*_pb2.py`` are generated from the vendored CRIU protos (``tools/criu_protos.py``,
run by the wheel's build hook), in the proto package ``forensic_checkpoint.criu``, so they never
clash with pycriu's modules in one process. The analyzer needs a dozen message types and keeps
the protobuf messages as they are. With protobuf's upb backend a class comes straight from a
private upb pool fed with the serialized descriptor embedded in its module
(``message_class``): executing the modules costs ~35 ms of a short ``search`` process, mostly
protobuf's pure-Python ``builder`` machinery they import.
"""

from __future__ import annotations

import codecs
import importlib
import importlib.util
import json
import re
import threading
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from forensic_checkpoint.errors import ImageError

#: the Python package of the generated modules, and the proto package of their messages
PB2_PACKAGE = "forensic_checkpoint.analysis.format.criu_proto"
PROTO_PACKAGE = "forensic_checkpoint.criu"

_lock = threading.Lock()
_modules: dict[str, ModuleType] = {}


@cache
def _pb2_dir() -> Path:
    directory = Path(__file__).parent / "criu_proto"
    if not (directory / "core_pb2.py").is_file():
        raise ImageError(
            "the CRIU image modules were not generated (criu_proto/*_pb2.py): install the "
            "package from a wheel or with pip, or run `python tools/criu_protos.py` in the "
            "source tree"
        )
    return directory


def pb2(module: str) -> ModuleType:
    """Import one generated module (thread-safe; the agent analyses in threads)."""
    mod = _modules.get(module)
    if mod is not None:
        return mod
    with _lock:
        if module not in _modules:
            _pb2_dir()
            _modules[module] = importlib.import_module(f"{PB2_PACKAGE}.{module}")
        return _modules[module]


#: ``AddSerializedFile(b'...')`` in a generated module, and the modules it imports
_SERIALIZED = re.compile(rb"AddSerializedFile\((b'(?:[^'\\]|\\.)*')\)")
_PB2_IMPORT = re.compile(
    rb"^from " + re.escape(PB2_PACKAGE.encode()) + rb" import (\w+_pb2) as", re.M
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


def _add_to_pool(pool: Any, module: str) -> None:
    """Add ``module``'s descriptor to the pool, its dependencies first (called under _lock)."""
    if module in _upb_files:
        return
    _upb_files.add(module)
    source = (_pb2_dir() / f"{module}.py").read_bytes()
    for dependency in _PB2_IMPORT.findall(source):
        _add_to_pool(pool, dependency.decode())
    pool.AddSerializedFile(_serialized_descriptor(source, module))


def message_class(module: str, message: str) -> type[Any]:
    """The class of top-level ``message`` of a generated ``*_pb2`` module (thread-safe)."""
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
            descriptor = _upb_pool.FindMessageTypeByName(f"{PROTO_PACKAGE}.{message}")
        except (OSError, TypeError, KeyError) as exc:
            raise ImageError(f"{module}.{message}: cannot load its descriptor: {exc}") from exc
        namespace = {"DESCRIPTOR": descriptor, "__module__": module}
        cls = upb.MessageMeta(message, (Message,), namespace)
        _classes[(module, message)] = cls
        return cls


@cache
def field_options() -> dict[str, dict[str, Any]]:
    """CRIU's field options (``(criu).hex``, ``dev``, ``ipadd``, ...) by full field name,
    taken out of the descriptors at generation time (``criu_proto/field_options.json``)."""
    loaded: dict[str, dict[str, Any]] = json.loads(
        (_pb2_dir() / "field_options.json").read_text(encoding="utf-8")
    )
    return loaded
