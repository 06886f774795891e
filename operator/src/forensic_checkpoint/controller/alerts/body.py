"""From request bytes to alert events, with bounds, off the event loop.

The receiver runs in the operator's event loop: decoding and validating a large body there
would stall every handler of the operator (a 6,500-alert notification did). So
:func:`decode_in_thread` does the whole decode in a worker thread, and refuses what no sender
should send: JSON nested deeper than :data:`MAX_DEPTH` (400; Python's decoder would otherwise
raise ``RecursionError``, a 500) and more alerts than ``max_alerts`` in one body (413).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from forensic_checkpoint.domain.alerts.events import AlertEvent

#: Alertmanager's deepest field is 4 levels down, a Falco output field a few more; 32 leaves
#: room for any real sender and none for a decoder bomb.
MAX_DEPTH = 32
_MAX_REASON_ERRORS = 5

Parser = Callable[[Any], list[AlertEvent]]


@dataclass
class BodyRefused(Exception):
    """The body is answered with ``status`` without looking at its alerts."""

    status: int
    #: A metrics label: InvalidJson, TooDeep, TooManyAlerts, SchemaViolation.
    reason: str
    answer: dict[str, Any]


async def decode_in_thread(raw: bytes, parse: Parser, max_alerts: int) -> list[AlertEvent]:
    return await asyncio.to_thread(decode, raw, parse, max_alerts)


def decode(raw: bytes, parse: Parser, max_alerts: int) -> list[AlertEvent]:
    try:
        data = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyRefused(400, "InvalidJson", {"error": f"invalid JSON: {exc}"}) from None
    if depth(data) > MAX_DEPTH:
        raise _too_deep()
    alerts = data.get("alerts") if isinstance(data, dict) else None
    count = len(alerts) if isinstance(alerts, list) else 1
    if count > max_alerts:
        raise BodyRefused(
            413,
            "TooManyAlerts",
            {
                "error": f"{count} alerts in one body, over the limit of {max_alerts}; "
                "set max_alerts in the Alertmanager webhook config (docs/alerts.md)"
            },
        )
    try:
        return parse(data)
    except ValidationError as exc:
        details = _schema_errors(exc)
        raise BodyRefused(
            400, "SchemaViolation", {"error": "schema violation", "details": details}
        ) from None


def depth(value: Any) -> int:
    """How deeply lists and objects nest in decoded JSON (a scalar is 0); iterative, so any
    depth that the decoder accepted is measured without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        stack.extend((child, level) for child in children)
    return deepest


def _too_deep() -> BodyRefused:
    return BodyRefused(400, "TooDeep", {"error": f"JSON nested deeper than {MAX_DEPTH} levels"})


def _schema_errors(exc: ValidationError) -> list[str]:
    errors = []
    for error in exc.errors(include_url=False, include_input=False)[:_MAX_REASON_ERRORS]:
        where = ".".join(str(part) for part in error["loc"]) or "(body)"
        errors.append(f"{where}: {error['msg']}")
    return errors
