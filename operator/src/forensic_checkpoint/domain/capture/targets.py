"""Which containers of which pod on which node to checkpoint, or why not (pure).

The controller fills :class:`PodFacts` from the API; this module decides. A rejection carries
a CamelCase reason and a message that says what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from forensic_checkpoint.api.forensiccheckpoint import MAX_CONTAINERS

POD_NOT_FOUND = "PodNotFound"
POD_NOT_SCHEDULED = "PodNotScheduled"
POD_NOT_RUNNING = "PodNotRunning"
POD_TERMINATING = "PodTerminating"
CONTAINER_NOT_FOUND = "ContainerNotFound"
CONTAINER_NOT_RUNNING = "ContainerNotRunning"
TOO_MANY_CONTAINERS = "TooManyContainers"


@dataclass(frozen=True)
class PodFacts:
    """What the decision needs to know about the pod, read from the API server."""

    name: str
    namespace: str
    uid: str
    phase: str
    node_name: str
    #: spec.containers names, in spec order (init and ephemeral containers are not targets).
    containers: Sequence[str]
    #: names of containers whose status says ``state.running``.
    running: frozenset[str] = field(default_factory=frozenset)
    terminating: bool = False


def pod_facts(pod: Mapping[str, Any]) -> PodFacts:
    """:class:`PodFacts` from a pod object as the API returns it (JSON)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    running = frozenset(
        str(s.get("name"))
        for s in status.get("containerStatuses") or []
        if (s.get("state") or {}).get("running") is not None
    )
    return PodFacts(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        uid=str(meta.get("uid", "")),
        phase=str(status.get("phase") or ""),
        node_name=str(spec.get("nodeName") or ""),
        containers=tuple(str(c.get("name")) for c in spec.get("containers") or []),
        running=running,
        terminating=meta.get("deletionTimestamp") is not None,
    )


@dataclass(frozen=True)
class Targets:
    node_name: str
    pod_uid: str
    containers: tuple[str, ...]


@dataclass(frozen=True)
class Rejection:
    reason: str
    message: str


def resolve_targets(  # noqa: PLR0911 - one early return per rejection reason
    pod: PodFacts | None, *, namespace: str, pod_name: str, requested: Sequence[str]
) -> Targets | Rejection:
    """Targets for a request of ``requested`` containers (empty: all) of ``pod``."""
    where = f"{namespace}/{pod_name}"
    if pod is None:
        return Rejection(POD_NOT_FOUND, f"pod {where} does not exist")
    if pod.terminating:
        return Rejection(POD_TERMINATING, f"pod {where} is being deleted")
    if not pod.node_name:
        return Rejection(POD_NOT_SCHEDULED, f"pod {where} is not scheduled to a node yet")
    if pod.phase != "Running":
        return Rejection(
            POD_NOT_RUNNING, f"pod {where} is {pod.phase or 'in no phase'}, not Running"
        )
    wanted = tuple(requested) if requested else tuple(pod.containers)
    missing = [name for name in wanted if name not in pod.containers]
    if missing:
        return Rejection(
            CONTAINER_NOT_FOUND,
            f"pod {where} has no container {', '.join(missing)} "
            f"(containers: {', '.join(pod.containers)})",
        )
    if len(wanted) > MAX_CONTAINERS:
        return Rejection(
            TOO_MANY_CONTAINERS,
            f"pod {where} has {len(wanted)} containers; name at most {MAX_CONTAINERS} in "
            "spec.containers",
        )
    stopped = [name for name in wanted if name not in pod.running]
    if stopped:
        return Rejection(
            CONTAINER_NOT_RUNNING,
            f"container {', '.join(stopped)} of pod {where} is not running",
        )
    return Targets(node_name=pod.node_name, pod_uid=pod.uid, containers=wanted)
