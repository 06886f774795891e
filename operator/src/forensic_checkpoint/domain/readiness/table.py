"""The ``forensic-checkpoint nodes`` table: one row per ForensicNode, one column per check."""

from __future__ import annotations

from datetime import datetime

from forensic_checkpoint.api.conditions import READY
from forensic_checkpoint.api.forensicnode import CheckStatus, ForensicNode
from forensic_checkpoint.domain.conditions import find_condition
from forensic_checkpoint.domain.readiness.checks import NOT_PROBED, CheckName

#: Column titles of ``forensic-checkpoint nodes``; one column per check, in blame order.
TABLE_COLUMNS: tuple[str, ...] = (
    "NODE",
    "READY",
    "REASON",
    "TLS",
    "AUTHN",
    "RUNTIME",
    "GATE",
    "AUTHZ",
    "CANARY",
    "CRIU",
    "HEARTBEAT",
)
_CHECK_COLUMNS = (
    CheckName.KUBELET_TLS,
    CheckName.KUBELET_AUTHENTICATION,
    CheckName.RUNTIME,
    CheckName.FEATURE_GATE,
    CheckName.AUTHORIZATION,
    CheckName.CANARY,
    CheckName.CRIU_CONFIG,
)


def table_row(node: ForensicNode, *, now: datetime) -> tuple[str, ...]:
    """One line of the table: a passing check shows ``ok``, any other its reason."""
    status = node.status
    checks = {c.name: c for c in (status.checks if status else [])}
    ready = find_condition(status.conditions, READY) if status else None
    cells = [str(node.metadata.get("name", "")), "Unknown", NOT_PROBED]
    if ready is not None:
        cells[1:3] = [ready.status.value, ready.reason]
    for name in _CHECK_COLUMNS:
        check = checks.get(name.value)
        if check is None:
            cells.append("-")
        elif check.status is CheckStatus.PASSED:
            cells.append("ok")
        else:
            cells.append(check.reason or check.status.value)
    agent = status.agent if status else None
    if agent is None:
        cells.append("never")
    else:
        age = max(0, int((now - agent.heartbeat_time).total_seconds()))
        cells.append(f"{age}s ago")
    return tuple(cells)
