"""From request bytes to alert events, with bounds, off the event loop.

The receiver runs in the operator's event loop: decoding and validating a large body there
would stall every handler of the operator (a 6,500-alert notification did). So
:func:`decode_in_thread` does the whole decode in a worker thread, and refuses what no sender
should send: JSON nested deeper than :data:`MAX_DEPTH` (400; Python's decoder would otherwise
raise ``RecursionError``, a 500). How many alerts a body holds is not limited: a storm sends
thousands in one notification and neither Alertmanager nor Falcosidekick resends a refused one;
the byte cap (``--alerts-max-body``, :func:`read_body`, 413) bounds the work, and the receiver
decides the alerts in slices that yield to the loop.

A worker thread alone does not keep the loop running: one call into C holds the GIL until it
returns. So the decoder calls back into Python for every JSON object (``object_hook``, which
lets the interpreter hand the GIL over), and alert lists are validated :data:`VALIDATE_SLICE`
alerts per pydantic call (:func:`validate_list`). A 6,500-alert body (4.4 MiB) otherwise held
the loop for about 45 ms in ``json.loads`` and 90 ms in one ``model_validate``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from forensic_checkpoint.domain.alerts.events import AlertEvent

#: Alertmanager's deepest field is 4 levels down, a Falco output field a few more; 32 leaves
#: room for any real sender and none for a decoder bomb.
MAX_DEPTH = 32
_MAX_REASON_ERRORS = 5
#: Items per pydantic call in :func:`validate_list`: about 3 ms of GIL for 250 alerts.
VALIDATE_SLICE = 250

T = TypeVar("T")

Parser = Callable[[Any], list[AlertEvent]]


@dataclass
class BodyRefused(Exception):
    """The body is answered with ``status`` without looking at its alerts."""

    status: int
    #: A metrics label: InvalidJson, TooDeep, SchemaViolation.
    reason: str
    answer: dict[str, Any]


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 over ``limit`` bytes (by ``Content-Length``, or while a
    chunked body is read): the only bound on a body's size, whatever it holds."""
    length = request.content_length
    if length is None or length <= limit:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            pass
    size = f"{length} bytes" if length is not None else "chunked"
    raise BodyRefused(
        413,
        "TooLarge",
        {
            "error": f"body ({size}) over the limit of {limit} bytes (--alerts-max-body); "
            "its alerts are lost, as senders do not resend a refused body: raise the "
            "limit, or set max_alerts in the Alertmanager webhook config (docs/alerts.md)"
        },
    )


async def decode_in_thread(raw: bytes, parse: Parser) -> list[AlertEvent]:
    return await asyncio.to_thread(decode, raw, parse)


def decode(raw: bytes, parse: Parser) -> list[AlertEvent]:
    try:
        data = json.loads(raw, object_hook=_yielding)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyRefused(400, "InvalidJson", {"error": f"invalid JSON: {exc}"}) from None
    if depth(data) > MAX_DEPTH:
        raise _too_deep()
    try:
        return parse(data)
    except ValidationError as exc:
        raise _schema_violation(exc) from None


def _yielding(obj: dict[str, Any]) -> dict[str, Any]:
    """The identity, in Python: called for every object, it lets the decoding thread give the
    GIL to the event loop (the C decoder alone would keep it for the whole body)."""
    return obj


def validate_list(items: list[Any], adapter: TypeAdapter[list[T]], where: str) -> list[T]:
    """``adapter.validate_python(items)`` in slices of :data:`VALIDATE_SLICE`, so that the
    operator's loop runs in between; a schema violation names ``<where>.<index>`` as one call
    would."""
    validated: list[T] = []
    for start in range(0, len(items), VALIDATE_SLICE):
        try:
            validated.extend(adapter.validate_python(items[start : start + VALIDATE_SLICE]))
        except ValidationError as exc:
            raise _schema_violation(exc, where, start) from None
    return validated


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


def _schema_violation(exc: ValidationError, where: str = "", offset: int = 0) -> BodyRefused:
    """A 400 naming the first offending fields; errors of a slice of the list at ``where``
    (starting at ``offset``) are named as in the whole body."""
    details = []
    for error in exc.errors(include_url=False, include_input=False)[:_MAX_REASON_ERRORS]:
        loc = list(error["loc"])
        if where:
            loc = [where, offset + int(loc[0]), *loc[1:]]
        field = ".".join(str(part) for part in loc) or "(body)"
        details.append(f"{field}: {error['msg']}")
    return BodyRefused(400, "SchemaViolation", {"error": "schema violation", "details": details})
