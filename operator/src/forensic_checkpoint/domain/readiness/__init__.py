"""Can this node take a forensic checkpoint right now? Pure evaluation of the agent's probes.

The agent gathers facts (the Node object's runtime and kubelet versions, one probe call to the
kubelet's checkpoint endpoint for a pod that cannot exist, a SelfSubjectAccessReview, the CRIU
configuration writer's result, optionally a canary capture) into a :class:`NodeProbe`
(:mod:`.probe`); :func:`evaluate` turns them into checks (:mod:`.checks`) and the node's
``Ready`` condition (:mod:`.verdict`). The operator reads the result back from the ForensicNode
with :func:`capture_blocker` to fail a capture at once, with the node's reason, instead of
waiting for the kubelet. :mod:`.table` renders the ``nodes`` table.

This package's names are its interface; import them from here.
"""

from forensic_checkpoint.domain.readiness.checks import (
    BLOCKING,
    CRIU_CONFIG_CONFLICT,
    CRIU_CONFIG_ERROR,
    NOT_PROBED,
    READY_REASON,
    READY_WITH_WARNINGS,
    UNDETERMINED,
    Check,
    CheckName,
    parse_version,
)
from forensic_checkpoint.domain.readiness.probe import (
    PROBE_CONTAINER,
    PROBE_NAMESPACE,
    PROBE_PATH,
    PROBE_POD,
    AccessReview,
    CanaryOutcome,
    CriuConfigObservation,
    KubeletProbe,
    NodeProbe,
)
from forensic_checkpoint.domain.readiness.table import TABLE_COLUMNS, table_row
from forensic_checkpoint.domain.readiness.verdict import (
    NodeNotReady,
    Readiness,
    capture_blocker,
    evaluate,
    to_status,
)

__all__ = [
    "BLOCKING",
    "CRIU_CONFIG_CONFLICT",
    "CRIU_CONFIG_ERROR",
    "NOT_PROBED",
    "PROBE_CONTAINER",
    "PROBE_NAMESPACE",
    "PROBE_PATH",
    "PROBE_POD",
    "READY_REASON",
    "READY_WITH_WARNINGS",
    "TABLE_COLUMNS",
    "UNDETERMINED",
    "AccessReview",
    "CanaryOutcome",
    "Check",
    "CheckName",
    "CriuConfigObservation",
    "KubeletProbe",
    "NodeNotReady",
    "NodeProbe",
    "Readiness",
    "capture_blocker",
    "evaluate",
    "parse_version",
    "table_row",
    "to_status",
]
