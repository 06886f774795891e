"""Whether a ForensicCheckpoint's analysis found something a responder must look at (pure).

The ``Suspicious`` condition turns the finding counts into something ``kubectl wait`` and alert
rules can select on: True as soon as any container's report holds a high or critical finding,
False once the capture completed without one, absent while the answer is not known yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from forensic_checkpoint.api.forensiccheckpoint import (
    ContainerStatus,
    ForensicCheckpointStatus,
    Phase,
)

SUSPICIOUS: Final = "Suspicious"
HIGH_SEVERITY: Final = "HighSeverityFindings"
NO_HIGH_SEVERITY: Final = "NoHighSeverityFindings"
#: Severities that make a checkpoint suspicious, most severe first (the message's order).
ALARMING: Final = ("critical", "high")
#: Rule ids named in the message; the full list is in each container's topFindings.
MAX_RULES: Final = 5


@dataclass(frozen=True)
class Verdict:
    suspicious: bool
    reason: str
    message: str


def _alarming_count(container: ContainerStatus) -> int:
    counts = container.summary.findings if container.summary and container.summary.findings else {}
    return sum(counts.get(severity, 0) for severity in ALARMING)


def verdict(status: ForensicCheckpointStatus) -> Verdict | None:
    """The ``Suspicious`` condition for ``status``, or None while it cannot be told yet."""
    totals = dict.fromkeys(ALARMING, 0)
    rules: list[str] = []
    for container in status.containers:
        if container.summary is None or _alarming_count(container) == 0:
            continue
        for severity in ALARMING:
            totals[severity] += (container.summary.findings or {}).get(severity, 0)
        for finding in container.summary.top_findings:
            if finding.severity in ALARMING and finding.rule not in rules:
                rules.append(finding.rule)
    if any(totals.values()):
        # Decided as soon as one container is analysed: a responder should not wait for the rest.
        counts = ", ".join(f"{n} {severity}" for severity, n in totals.items() if n)
        named = ", ".join(rules[:MAX_RULES]) + (", ..." if len(rules) > MAX_RULES else "")
        message = f"{counts} finding(s)" + (f": {named}" if named else "")
        return Verdict(True, HIGH_SEVERITY, message)
    if status.phase == Phase.COMPLETED:
        return Verdict(False, NO_HIGH_SEVERITY, "no high or critical finding")
    return None
