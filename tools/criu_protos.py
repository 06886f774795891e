"""Generate the analyzer's CRIU image modules from the vendored CRIU .proto files.

Run at build time by the wheel's build hook (``hatch_build.py``) and by hand in a source tree:

    python tools/criu_protos.py        # needs grpcio-tools (the build requirement)

CRIU's ``images/*.proto`` (``third_party/criu``, MIT) declare no package, import each other by
bare name and tag fields with CRIU's own option ``(criu).hex``/``dev``/... (extension 1018 of
FieldOptions). Generated as they are, the modules would clash with pycriu's in one process (the
same message names and the same extension number in protobuf's default pool) and import each
other by bare name (pycriu puts its directory on ``sys.path``). So the descriptors are rewritten
before Python is generated from them: package ``forensic_checkpoint.criu``, files named under
our Python package (so that the modules import each other as
``forensic_checkpoint.analysis.format.criu_proto.X_pb2``), and CRIU's field options moved out
of the descriptors into ``field_options.json`` (read by the JSON rendering of ``show-file
--decode``). Field numbers, types and names are untouched, so the wire format is CRIU's.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "third_party" / "criu" / "images"
PY_PACKAGE = "forensic_checkpoint/analysis/format/criu_proto"
OUT_DIR = ROOT / "operator" / "src" / PY_PACKAGE
PROTO_PACKAGE = "forensic_checkpoint.criu"
OPTIONS_FILE = "field_options.json"
#: CRIU's FieldOptions extension (images/opts.proto) and its CRIU_Opts fields
CRIU_OPTS_EXTENSION = 1018
CRIU_OPTS_FIELDS = {1: "hex", 2: "ipadd", 3: "flags", 4: "dev", 5: "odev", 6: "dict", 7: "conv"}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, int, Any, bytes]]:
    """(number, wire type, value, raw bytes) of each field of a serialized message."""
    out: list[tuple[int, int, Any, bytes]] = []
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:  # pragma: no cover - groups never appear in options
            raise ValueError(f"unsupported wire type {wire} in field options")
        out.append((number, wire, value, data[start:pos]))
    return out


def _criu_options(raw: bytes) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for number, wire, value, _ in _fields(raw):
        name = CRIU_OPTS_FIELDS[number]
        options[name] = bool(value) if wire == 0 else value.decode()
    return options


def _rewrite_type(name: str) -> str:
    if name.startswith(".") and not name.startswith(".google."):
        return f".{PROTO_PACKAGE}{name}"
    return name


def _rewrite_message(message: Any, path: str, options: dict[str, dict[str, Any]]) -> None:
    for field in message.field:
        if field.type_name:
            field.type_name = _rewrite_type(field.type_name)
        if field.HasField("options"):
            kept = b""
            for number, _, value, raw in _fields(field.options.SerializeToString()):
                if number == CRIU_OPTS_EXTENSION:
                    options[f"{path}.{field.name}"] = _criu_options(value)
                else:
                    kept += raw
            field.ClearField("options")
            if kept:
                field.options.ParseFromString(kept)
    for nested in message.nested_type:
        _rewrite_message(nested, f"{path}.{nested.name}", options)


def _rename(proto_name: str) -> str:
    return f"{PY_PACKAGE}/{proto_name}"


def rewrite(files: list[Any]) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """The CRIU files (without opts.proto) under our package, and the options taken out."""
    options: dict[str, dict[str, Any]] = {}
    out = []
    for proto in files:
        if proto.name in ("opts.proto", "google/protobuf/descriptor.proto"):
            continue
        if proto.package or proto.extension or proto.public_dependency or proto.weak_dependency:
            raise ValueError(f"{proto.name}: a shape the rewrite does not handle")
        dependencies = [_rename(d) for d in proto.dependency if d != "opts.proto"]
        del proto.dependency[:]
        proto.dependency.extend(dependencies)
        proto.name = _rename(proto.name)
        proto.package = PROTO_PACKAGE
        for message in proto.message_type:
            _rewrite_message(message, f"{PROTO_PACKAGE}.{message.name}", options)
        out.append(proto)
    return out, options


def generate(out_dir: Path = OUT_DIR, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Write ``*_pb2.py`` and ``field_options.json`` into ``out_dir``; return what was written."""
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/descriptor.proto
    sources = sorted(p.name for p in proto_dir.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        raw, rewritten, py_out = Path(tmp, "raw.pb"), Path(tmp, "criu.pb"), Path(tmp, "py")
        py_out.mkdir()
        imports = [f"-I{proto_dir}", f"-I{include}", "--include_imports"]
        _protoc(protoc, [*imports, f"--descriptor_set_out={raw}", *sources])
        files = descriptor_pb2.FileDescriptorSet.FromString(raw.read_bytes()).file
        kept, options = rewrite(list(files))
        rewritten.write_bytes(descriptor_pb2.FileDescriptorSet(file=kept).SerializeToString())
        names = [p.name for p in kept]
        _protoc(protoc, [f"--descriptor_set_in={rewritten}", f"--python_out={py_out}", *names])
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob("*_pb2.py"):
            stale.unlink()
        written = []
        for module in sorted((py_out / PY_PACKAGE).glob("*_pb2.py")):
            written.append(Path(shutil.copy2(module, out_dir / module.name)))
        table = out_dir / OPTIONS_FILE
        table.write_text(json.dumps(options, indent=0, sort_keys=True) + "\n", encoding="utf-8")
        written.append(table)
    return written


def _protoc(protoc: Any, args: list[str]) -> None:
    if protoc.main(["protoc", *args]) != 0:
        raise RuntimeError(f"protoc {' '.join(args)} failed")


if __name__ == "__main__":
    done = generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR)
    print(f"criu_protos: wrote {len(done)} files into {done[0].parent}")
