"""Process-wide logging set-up: one JSON object per line for log collectors, or plain text.

Stdlib only, so every layer (and kopf's own loggers, which log through the root logger) ends up
in the same format. A JSON line holds ``time`` (RFC 3339, UTC, milliseconds), ``level``,
``logger``, ``message``, ``exception`` when there is one, and every ``extra={...}`` field of the
call. kopf's per-object loggers attach the object's reference as ``k8s_ref``; it is emitted as
``object``, the key kopf's own JSON format uses, so queries written for either keep working.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Final, Literal

LogFormat = Literal["json", "text"]
FORMATS: Final = ("json", "text")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
#: kopf's internals on its object loggers' records: its settings object and an event-posting flag.
_KOPF_INTERNAL = frozenset({"settings", "k8s_skip"})
_RENAMED = {"k8s_ref": "object"}
#: Fields the formatter writes itself; an ``extra`` of the same name is kept under ``extra_<name>``.
_OWN = frozenset({"time", "level", "logger", "message", "exception", "stack"})


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (embedded newlines are escaped by JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name in _STANDARD or name in _KOPF_INTERNAL:
                continue
            key = _RENAMED.get(name, name)
            entry[f"extra_{key}" if key in _OWN else key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that is not JSON (a path, an enum) is logged as its text, never
        # dropped and never an error inside logging.
        return json.dumps(entry, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler :func:`configure` installed."""


def default_format() -> LogFormat:
    """JSON when stderr is not a terminal (a pod's log), text for a person at a terminal."""
    return "text" if sys.stderr.isatty() else "json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format json|text``; their defaults come from
    ``FORENSIC_LOG_LEVEL`` (else INFO) and ``FORENSIC_LOG_FORMAT`` (else :func:`default_format`),
    so a process started by someone else (a test harness, ``kubectl set env``) can be turned up
    without changing its arguments."""
    env = os.environ.get
    parser.add_argument(
        "--log-level",
        default=env("FORENSIC_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (env FORENSIC_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=env("FORENSIC_LOG_FORMAT") or default_format(),
        help="json: one JSON object per line; text: for a terminal (env FORENSIC_LOG_FORMAT; "
        "default: json unless stderr is a terminal)",
    )


def configure(fmt: LogFormat = "json", level: int | str = logging.INFO) -> None:
    """Send every logger's records to stderr in ``fmt``, at ``level`` (a name or a number).
    Safe to call again, and it replaces an earlier ``basicConfig``."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(FORMATS)}")
    handler = _Handler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    # Drop an earlier configure()'s handler and basicConfig's plain stream handler, so no line
    # is written twice; other handlers (pytest's capture, a file handler) stay.
    root.handlers[:] = [
        h
        for h in root.handlers
        if not isinstance(h, _Handler) and type(h) is not logging.StreamHandler
    ]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
