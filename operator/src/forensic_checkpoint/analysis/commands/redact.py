"""The one place where secrets are masked before a report leaves the analyzer.

Environment values (read from memory and from the OCI spec) and regex matches are secrets by
default: a regex like ``st_[0-9a-f]{24}`` exists to find tokens. A literal ``--search`` is the
user's own text, so its match may be shown; the bytes around any match are masked because they
are often the rest of a secret. ``--reveal`` skips this function.
"""

from __future__ import annotations

from copy import deepcopy

from forensic_checkpoint.analysis.model.process import EnvVar
from forensic_checkpoint.analysis.model.report import REDACTED, MemorySearch, Report


def _mask_env(env: list[EnvVar]) -> list[EnvVar]:
    return [EnvVar(name=e.name, value=REDACTED if e.value else "") for e in env]


def redact(report: Report, *, copy: bool = True) -> Report:
    """``report`` with secret values masked and ``redacted`` set; a deep copy unless the
    caller owns the report and passes ``copy=False``."""
    out = deepcopy(report) if copy else report
    out.redacted = True
    out.container.spec_env = _mask_env(out.container.spec_env)
    for proc in out.processes:
        proc.env = _mask_env(proc.env)
    mask_searches(out.memory.searches)
    return out


def mask_searches(searches: list[MemorySearch]) -> None:
    """Mask memory-search matches in place (also used by ``search``, which has no Report)."""
    for search in searches:
        for match in search.matches:
            if search.kind == "regex":
                match.match = REDACTED
                match.context = REDACTED
            else:
                match.context = _around(match.context, match.match)


def _around(context: str, match: str) -> str:
    """Keep the literal itself and mask its neighbours character for character."""
    at = context.find(match)
    if at < 0:
        return REDACTED
    return "*" * at + match + "*" * (len(context) - at - len(match))
