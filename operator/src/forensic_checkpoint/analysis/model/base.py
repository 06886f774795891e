"""``ReportModel``: the base of the report's classes, stdlib dataclasses with camelCase JSON.

Not pydantic models: importing pydantic and building the schemas of the report's ~45 classes
took ~150 ms, more than half of a whole ``analyze`` of a small checkpoint, and the analyzer
never needs validation because only its own typed code builds reports. Where a report is
parsed (the operator reading an agent's answer), pydantic validates these same dataclasses
through ``TypeAdapter``; ``__pydantic_config__`` gives it the camelCase aliases.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from typing import Any, ClassVar


@cache
def to_camel(name: str) -> str:
    """``size_bytes`` -> ``sizeBytes``; a name without underscores is unchanged."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_KEYS: dict[type, tuple[tuple[str, str], ...]] = {}


def _keys(cls: type) -> tuple[tuple[str, str], ...]:
    """(attribute, JSON key) of each field, computed once per class."""
    keys = _KEYS.get(cls)
    if keys is None:
        keys = _KEYS[cls] = tuple((f.name, to_camel(f.name)) for f in dataclasses.fields(cls))
    return keys


def json_value(value: Any, *, exclude_none: bool = False) -> Any:
    """``value`` as plain JSON data: records become camelCase dicts, tuples lists."""
    if isinstance(value, ReportModel):
        return value.to_json_dict(exclude_none=exclude_none)
    if isinstance(value, list | tuple):
        return [json_value(v, exclude_none=exclude_none) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v, exclude_none=exclude_none) for k, v in value.items()}
    return value


class ReportModel:
    """Subclasses are ``@dataclass(kw_only=True)``: fields are always passed by name, as
    with the models they replaced, so a required field may follow defaulted ones."""

    __pydantic_config__: ClassVar[dict[str, Any]] = {
        "alias_generator": to_camel,
        "validate_by_name": True,
        "validate_by_alias": True,
    }

    def to_json_dict(self, *, exclude_none: bool = False) -> dict[str, Any]:
        """The camelCase JSON document of this model, in field order."""
        out: dict[str, Any] = {}
        for attr, key in _keys(type(self)):
            value = getattr(self, attr)
            if value is None and exclude_none:
                continue
            out[key] = json_value(value, exclude_none=exclude_none)
        return out

    def to_json(self) -> str:
        """Compact JSON text of ``to_json_dict()`` (UTF-8 kept as is, not \\u-escaped)."""
        return json.dumps(self.to_json_dict(), separators=(",", ":"), ensure_ascii=False)


def field_names(cls: type) -> frozenset[str]:
    """The snake_case field names of a report model class."""
    return frozenset(attr for attr, _ in _keys(cls))
