"""The one place that imports yara-x: compiling rule sources and making scanners.

The literal finder of memory searches, the credential anchors and the user's ``--yara`` rules
all scan with yara-x; they reach it only through these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class RuleSourceError(Exception):
    """yara-x refused a rule source; ``origin`` is its file, when it came from one."""

    def __init__(self, origin: str | None, message: str) -> None:
        super().__init__(message)
        self.origin = origin


def compile_sources(sources: Iterable[tuple[str | None, str, str | None]]) -> Any:
    """One yara-x Rules object from (namespace or None for the default, text, origin or None)."""
    import yara_x

    compiler = yara_x.Compiler()
    for namespace, text, origin in sources:
        if namespace is not None:
            compiler.new_namespace(namespace)
        try:
            if origin is None:
                compiler.add_source(text)
            else:
                compiler.add_source(text, origin=origin)
        except yara_x.CompileError as exc:
            raise RuleSourceError(origin, str(exc)) from exc
    return compiler.build()


def new_scanner(rules: Any) -> Any:
    """A yara-x Scanner over compiled rules (not thread-safe: one per user)."""
    import yara_x

    return yara_x.Scanner(rules)
