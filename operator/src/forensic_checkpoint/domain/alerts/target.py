"""Which pod (and container) an alert is about, read from the alert only, never guessed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from forensic_checkpoint.api.policy import AlertSource
from forensic_checkpoint.domain.alerts.events import AlertEvent

#: Falco fields, preferred first. ``ka.target.*`` is what k8s-audit events carry.
FALCO_NAMESPACE_FIELDS = ("k8s.ns.name", "ka.target.namespace")
FALCO_POD_FIELDS = ("k8s.pod.name",)
FALCO_CONTAINER_NAME_FIELD = "container.name"
#: ``container.id`` is only the first 12 characters; ``container.full_id`` is the whole ID.
FALCO_CONTAINER_ID_FIELDS = ("container.full_id", "container.id")
#: Falco's container.id for events outside any container.
FALCO_HOST_CONTAINER_ID = "host"


@dataclass(frozen=True)
class TargetMapping:
    """The Alertmanager labels that name the target (cAdvisor's and kube-state-metrics' names
    by default; relabelled setups use others)."""

    namespace_label: str = "namespace"
    pod_label: str = "pod"
    container_label: str = "container"


@dataclass(frozen=True)
class Target:
    namespace: str
    pod: str
    #: The container name, when the alert gives one.
    container: str | None = None
    #: A runtime container ID (maybe a 12-character prefix) when the alert gives no name; the
    #: receiver resolves it against the pod's containerStatuses.
    container_id: str | None = None


class NoTargetError(ValueError):
    """The alert names no pod; ``reason`` is the metrics label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def map_target(event: AlertEvent, mapping: TargetMapping | None = None) -> Target:
    """The pod the alert is about; raises :class:`NoTargetError` when it names none."""
    mapping = mapping or TargetMapping()
    labels = event.labels
    if event.source is AlertSource.ALERTMANAGER:
        namespace = labels.get(mapping.namespace_label, "").strip()
        pod = labels.get(mapping.pod_label, "").strip()
        container = labels.get(mapping.container_label, "").strip() or None
        container_id = None
        where = f"labels {mapping.namespace_label!r}/{mapping.pod_label!r}"
    else:
        namespace = _first(labels, FALCO_NAMESPACE_FIELDS)
        pod = _first(labels, FALCO_POD_FIELDS)
        container = labels.get(FALCO_CONTAINER_NAME_FIELD) or None
        container_id = _first(labels, FALCO_CONTAINER_ID_FIELDS) or None
        if FALCO_HOST_CONTAINER_ID in (labels.get("container.id"), container_id):
            raise NoTargetError("NoPod", "the Falco event happened on the host, not in a pod")
        where = "output fields k8s.ns.name/k8s.pod.name"
    if not pod:
        raise NoTargetError("NoPod", f"the alert names no pod ({where})")
    if not namespace:
        raise NoTargetError("NoNamespace", f"the alert names pod {pod!r} but no namespace")
    return Target(namespace=namespace, pod=pod, container=container, container_id=container_id)


def _first(labels: Mapping[str, str], keys: tuple[str, ...]) -> str:
    for key in keys:
        if value := labels.get(key, "").strip():
            return value
    return ""


def resolve_container_id(container_id: str, ids: Mapping[str, str]) -> str | None:
    """The name of the container whose runtime ID is ``container_id`` or starts with it (Falco's
    ``container.id`` is a 12-character prefix); None when none or more than one match."""
    wanted = container_id.split("://", 1)[-1].lower()
    if not wanted:
        return None
    names = [name for name, full in ids.items() if full.lower().startswith(wanted)]
    return names[0] if len(names) == 1 else None
