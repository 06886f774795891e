"""The ``metav1.Condition`` shape, so that ``kubectl wait --for=condition=Ready`` works."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from forensic_checkpoint.api.base import KubeModel, Reason

#: Condition types every resource of this project uses.
READY = "Ready"
CAPTURED = "Captured"
ANALYZED = "Analyzed"
#: True once the object failed for good, as a Job's ``Failed`` (``kubectl wait`` returns at once).
FAILED = "Failed"
#: kstatus (sigs.k8s.io/cli-utils): True while the controller still works towards the goal ...
RECONCILING = "Reconciling"
#: ... and True when it cannot progress any further. Both are kept False, never removed, when
#: they do not hold, so that ``kubectl wait --for=condition=Reconciling=false`` returns.
STALLED = "Stalled"

ConditionType = Annotated[
    str,
    Field(
        min_length=1,
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    ),
]


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """One observation about the object. ``last_transition_time`` changes only when ``status``
    changes (see :func:`forensic_checkpoint.domain.conditions.set_condition`)."""

    type: ConditionType
    """The condition's type, e.g. Ready."""
    status: ConditionStatus
    """True, False or Unknown."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation the condition was set for."""
    last_transition_time: datetime
    """When the status last changed."""
    reason: Reason
    """A CamelCase reason for the status."""
    message: str = Field(default="", max_length=32768)
    """A human-readable explanation."""
