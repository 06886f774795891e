"""Condition bookkeeping with Kubernetes semantics: one entry per type, and
``lastTransitionTime`` moves only when ``status`` changes (so ``kubectl wait`` and humans can
tell when something actually happened)."""

from __future__ import annotations

from datetime import datetime

from forensic_checkpoint.api.conditions import Condition, ConditionStatus


def set_condition(
    conditions: list[Condition],
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """A new list with the condition of ``type_`` set; the input is not modified."""
    previous = find_condition(conditions, type_)
    transition = (
        previous.last_transition_time if previous is not None and previous.status == status else now
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        observed_generation=generation,
        last_transition_time=transition,
    )
    out = [c for c in conditions if c.type != type_]
    out.append(updated)
    return sorted(out, key=lambda c: c.type)


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
