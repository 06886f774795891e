"""A CRIU image as JSON in crit's shape (``{"magic": ..., "entries": [...]}``), for
``show-file --decode``; the cross-check test compares it with pycriu's ``images.load``.

Entries are dicts of the fields that are set, enums by name, bytes in base64 (``unix_name``
fields quoted-printable, as crit writes them) and the raw payload that follows an entry under
``extra``. With ``pretty`` (the default, as ``crit show``), numbers CRIU marks as hex, device
numbers and IP addresses are written as crit writes them; flag words are written in hex.
"""

from __future__ import annotations

import base64
import quopri
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from forensic_checkpoint.analysis.format.criu_images import Image, decode_any
from forensic_checkpoint.analysis.format.criu_messages import PROTO_PACKAGE, field_options

_MINORBITS = 20  # the kernel's new dev_t encoding; (criu).odev fields use the old one
_MESSAGE, _BYTES, _ENUM = 11, 12, 14  # FieldDescriptor.TYPE_*
_BOOL, _STRING = 8, 9
_REPEATED = 3


def image_json(name: str, data: bytes, pretty: bool = True) -> dict[str, Any]:
    """Decode ``data`` (any image type) and render it; ImageError if it does not decode."""
    image = decode_any(data, name)
    return {"magic": image.kind, "entries": image_entries(image, pretty)}


def _b64(blob: bytes) -> str:
    return base64.encodebytes(blob).decode()


def image_entries(image: Image, pretty: bool = True) -> list[dict[str, Any]]:
    entries = [message_dict(entry, pretty) for entry in image.entries]
    if image.kind == "GHOST_FILE":
        if not image.chunks:
            entries[0]["extra"] = _b64(image.content)
        for chunk, blob in image.chunks:
            entries.append({**message_dict(chunk, pretty), "extra": _b64(blob)})
        return entries
    for entry, extra in zip(entries, image.payloads, strict=False):
        entry["extra"] = _extra(image.kind, extra, pretty)
    return entries


def _extra(kind: str, extra: Any, pretty: bool) -> Any:
    if kind == "TCP_STREAM":
        return {"inq": _b64(extra[0]), "outq": _b64(extra[1])}
    if kind == "IPCNS_SEM":
        return [int.from_bytes(extra[i : i + 2], "little") for i in range(0, len(extra), 2)]
    if kind == "IPCNS_MSG":
        flat: list[Any] = []
        for message, blob in extra:
            flat += [message_dict(message, pretty), _b64(blob)]
        return flat
    return _b64(extra)


def message_dict(message: Any, pretty: bool = True, hex_all: bool = False) -> dict[str, Any]:
    """The fields of ``message`` that are set, as crit renders them."""
    out: dict[str, Any] = {}
    for fd, value in message.ListFields():
        options = field_options().get(fd.full_name, {}) if pretty else {}
        if fd.label == _REPEATED:
            if options.get("ipadd"):
                out[fd.name] = [_ip_address(list(value))]
            else:
                out[fd.name] = [_value(fd, v, options, pretty, hex_all) for v in value]
        else:
            out[fd.name] = _value(fd, value, options, pretty, hex_all)
    return out


def _value(fd: Any, value: Any, options: dict[str, Any], pretty: bool, hex_all: bool) -> Any:
    hex_all = hex_all or bool(options.get("hex"))
    if fd.type == _MESSAGE:
        return message_dict(value, pretty, hex_all)
    if fd.type == _BYTES:
        if options.get("conv") == "unix_name" or _unix_name(fd):
            return quopri.encodestring(value).decode()
        return _b64(value)
    if fd.type == _ENUM:
        found = fd.enum_type.values_by_number.get(value)
        return found.name if found is not None else value
    if fd.type in (_BOOL, _STRING) or not pretty:
        return value
    return _pretty_number(value, options, hex_all)


def _pretty_number(value: int, options: dict[str, Any], hex_all: bool) -> Any:
    if hex_all or options.get("flags"):
        return f"0x{value:x}"
    if not options.get("dev"):
        return value
    if options.get("odev"):  # glibc's old encoding
        major = ((value >> 8) & 0xFFF) | ((value >> 32) & ~0xFFF)
        minor = (value & 0xFF) | ((value >> 12) & ~0xFF)
        return f"{major}:{minor}"
    return f"{value >> _MINORBITS}:{value & ((1 << _MINORBITS) - 1)}"


def _unix_name(fd: Any) -> bool:
    """crit writes ``(criu).conv = "unix_name"`` bytes quoted-printable even when not pretty."""
    return bool(field_options().get(fd.full_name, {}).get("conv") == "unix_name")


def _ip_address(words: list[int]) -> str:
    if len(words) == 1:
        return IPv4Address(int.from_bytes(words[0].to_bytes(4, "little"), "big")).compressed
    value = 0
    for word in words[:4]:
        value = (value << 32) | int.from_bytes(word.to_bytes(4, "little"), "big")
    return IPv6Address(value).compressed


__all__ = ["PROTO_PACKAGE", "image_entries", "image_json", "message_dict"]
