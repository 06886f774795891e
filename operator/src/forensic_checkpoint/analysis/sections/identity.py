"""Container identity from the engine's metadata members (config.dump, spec.dump, status.dump).

Each engine stores names in a different place (reference §2.7): CRI-O copies the kubelet's
``io.kubernetes.*`` annotations into spec.dump, containerd writes ``io.kubernetes.cri.*`` and
keeps the kubelet's labels in status.dump, podman has only its own config.dump. An engine is
named only on evidence; an archive without any marker is "unknown", not "containerd".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from forensic_checkpoint.analysis.model.report import ContainerInfo, EnvVar

_ZERO_TIME_PREFIX = "0001-01-01"


def load_json(data: bytes | None, name: str, warnings: list[str]) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError as exc:
        warnings.append(f"{name} is not valid JSON: {str(exc)[:120]}")
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def detect_engine(spec: dict[str, Any], config: dict[str, Any], members: set[str]) -> str:
    annotations = _dict(spec.get("annotations"))
    manager = annotations.get("io.container.manager")
    if manager == "libpod":
        return "podman"
    if manager == "cri-o":
        return "cri-o"
    if any(k.startswith("io.kubernetes.cri.") for k in annotations) or "status.dump" in members:
        return "containerd"
    if "io.kubernetes.cri-o.LogPath" in members:
        return "cri-o"
    if (
        "ctr.log" in members
        or "network.status" in members
        or "libpod" in str(config.get("ociRuntime", ""))
    ):
        return "podman"
    return "unknown"


def _labels(annotations: dict[str, Any], status: dict[str, Any]) -> dict[str, str]:
    raw = annotations.get("io.kubernetes.cri-o.Labels")
    labels: dict[str, Any] = {}
    if isinstance(raw, str):
        try:
            labels = _dict(json.loads(raw))
        except ValueError:
            labels = {}
    labels.update(_dict(status.get("labels")))
    return {str(k): str(v) for k, v in labels.items()}


def _first_ip(network_status: Any) -> str | None:
    """podman's netavark network.status: {net: {interfaces: {if: {subnets: [{ipnet}]}}}}."""
    for net in _dict(network_status).values():
        for iface in _dict(_dict(net).get("interfaces")).values():
            for subnet in _dict(iface).get("subnets") or []:
                ipnet = _dict(subnet).get("ipnet")
                if isinstance(ipnet, str) and ipnet:
                    return ipnet.split("/", 1)[0]
    return None


def _time(value: Any) -> str | None:
    text = _str(value)
    if text is None or text.startswith(_ZERO_TIME_PREFIX):
        return None
    return text


def _ns_time(value: Any) -> str | None:
    if isinstance(value, int | str) and str(value).isdigit() and int(value) > 0:
        return datetime.fromtimestamp(int(value) / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")
    return None


def build_identity(
    *,
    config: dict[str, Any],
    spec: dict[str, Any],
    status_dump: dict[str, Any],
    network_status: Any,
    status: dict[str, Any] | None = None,
    hostname: str | None,
    domainname: str | None,
    checkpoint_mtime: int | None,
) -> ContainerInfo:
    ann_raw = _dict(spec.get("annotations"))
    ann = {str(k): str(v) for k, v in ann_raw.items()}
    # containerd keeps the kubelet's container annotations only in status.dump
    for key, value in _dict(status_dump.get("annotations")).items():
        ann.setdefault(str(key), str(value))
    process = _dict(spec.get("process"))
    meta_name = None
    if "io.kubernetes.cri-o.Metadata" in ann:
        try:
            meta_name = _str(_dict(json.loads(ann["io.kubernetes.cri-o.Metadata"])).get("name"))
        except ValueError:
            meta_name = None
    status_meta = _dict(status_dump.get("metadata"))
    status_labels = _dict(status_dump.get("labels"))
    name = (
        ann.get("io.kubernetes.container.name")
        or ann.get("io.kubernetes.cri.container-name")
        or meta_name
        or _str(status_meta.get("name"))
        or _str(status_labels.get("io.kubernetes.container.name"))
        or _str(config.get("name"))
    )
    pod = (
        ann.get("io.kubernetes.pod.name")
        or ann.get("io.kubernetes.cri.sandbox-name")
        or _str(status_labels.get("io.kubernetes.pod.name"))
    )
    namespace = (
        ann.get("io.kubernetes.pod.namespace")
        or ann.get("io.kubernetes.cri.sandbox-namespace")
        or _str(status_labels.get("io.kubernetes.pod.namespace"))
    )
    pod_uid = (
        ann.get("io.kubernetes.pod.uid")
        or ann.get("io.kubernetes.cri.sandbox-uid")
        or _str(status_labels.get("io.kubernetes.pod.uid"))
    )
    pod_id = (
        _str(config.get("pod"))
        or ann.get("io.kubernetes.cri-o.SandboxID")
        or ann.get("io.kubernetes.cri.sandbox-id")
    )
    image = (
        _str(config.get("rootfsImageName"))
        or ann.get("io.kubernetes.cri-o.ImageName")
        or ann.get("io.kubernetes.cri.image-name")
        or _str(config.get("rootfsImage"))
        or _str(config.get("rawImageName"))
    )
    image_id = _str(config.get("rootfsImageRef")) or _str(config.get("rootfsImageID"))
    created = (
        _time(config.get("createdTime"))
        or ann.get("io.kubernetes.cri-o.Created")
        or _ns_time(status_dump.get("created_at"))
    )
    checkpointed = _time(config.get("checkpointedTime"))
    if checkpointed is None and checkpoint_mtime:
        # podman and CRI-O do not record it; the checkpoint/ directory's tar mtime is the
        # time the images were written (second resolution).
        checkpointed = (
            datetime.fromtimestamp(checkpoint_mtime, tz=UTC).isoformat().replace("+00:00", "Z")
        )
    ip = ann.get("io.kubernetes.cri-o.IP.0") or _first_ip(network_status)
    env: list[EnvVar] = []
    for item in process.get("env") or []:
        if isinstance(item, str):
            key, _, value = item.partition("=")
            env.append(EnvVar(name=key, value=value))
    return ContainerInfo(
        id=_str(config.get("id")) or _str(status_dump.get("id")),
        name=name,
        config_name=_str(config.get("name")),
        pod=pod,
        pod_id=pod_id,
        pod_uid=pod_uid,
        namespace=namespace,
        image=image,
        image_id=image_id,
        runtime=_str(config.get("runtime")) or _str(config.get("ociRuntime")),
        hostname=hostname or _str(spec.get("hostname")),
        domainname=domainname,
        created_at=created,
        checkpointed_at=checkpointed,
        ip=ip,
        host_pid=_positive_int(_dict(status).get("Pid")),
        log_path=_str(status_dump.get("log_path")) or ann.get("io.kubernetes.cri-o.LogPath"),
        args=[a for a in process.get("args") or [] if isinstance(a, str)],
        cwd=_str(process.get("cwd")),
        spec_env=env,
        annotations=ann,
        labels=_labels(ann_raw, status_dump),
    )
