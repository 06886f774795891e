"""Regular expressions that users give (``spec.analysis.regexes``, ``--search-regex``), on RE2.

RE2 runs in time linear in the text whatever the pattern, so a tenant's regex cannot hold an
agent's analysis for minutes the way a backtracking one (``(\\x00|\\x00\\x00)*\\x01`` over zero
pages) does. The operator compiles each regex with this same function before it asks for a
capture, so a pattern RE2 refuses (a backreference, a lookaround) fails the ForensicCheckpoint
before any container is frozen, never after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is the caller's ValueError, not a line on stderr
# Memory is raw bytes, not UTF-8: in Latin-1 mode each byte is one character, so ``\xff`` and
# ``[\x00-\x05]`` mean bytes, as in a Python bytes regex.
_OPTIONS.encoding = re2.Options.Encoding.LATIN1


class Match(Protocol):
    def span(self) -> tuple[int, int]: ...


class Regex(Protocol):
    """What callers use of a compiled RE2 pattern (google-re2 ships no type hints)."""

    def finditer(self, text: bytes | bytearray, pos: int = ...) -> Iterator[Match]: ...


def compile_user_regex(expr: bytes) -> Regex:
    """``expr`` compiled for raw bytes; ``ValueError`` saying why when RE2 cannot run it."""
    try:
        compiled: Regex = re2.compile(expr, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(
            f"invalid regular expression (RE2 syntax: no backreferences or lookaround): {detail}"
        ) from exc
    return compiled
