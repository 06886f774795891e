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

from forensic_checkpoint.analysis.model.process import EnvVar
from forensic_checkpoint.analysis.model.report import ContainerInfo

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


def _first(*values: str | None) -> str | None:
    """The first non-empty value (``a or b or c``: the last one when none is)."""
    for value in values:
        if value:
            return value
    return values[-1]


def _annotations(spec: dict[str, Any], status_dump: dict[str, Any]) -> dict[str, str]:
    ann = {str(k): str(v) for k, v in _dict(spec.get("annotations")).items()}
    # containerd keeps the kubelet's container annotations only in status.dump
    for key, value in _dict(status_dump.get("annotations")).items():
        ann.setdefault(str(key), str(value))
    return ann


def _crio_metadata_name(ann: dict[str, str]) -> str | None:
    if "io.kubernetes.cri-o.Metadata" not in ann:
        return None
    try:
        return _str(_dict(json.loads(ann["io.kubernetes.cri-o.Metadata"])).get("name"))
    except ValueError:
        return None


def _pod_field(
    ann: dict[str, str], labels: dict[str, Any], key: str, containerd_name: str
) -> str | None:
    """A pod field: CRI-O's annotation ``key``, containerd's ``io.kubernetes.cri.<name>``
    annotation, or the ``key`` label of status.dump."""
    return _first(
        ann.get(key), ann.get(f"io.kubernetes.cri.{containerd_name}"), _str(labels.get(key))
    )


def _kubernetes_names(
    ann: dict[str, str], config: dict[str, Any], status_dump: dict[str, Any]
) -> dict[str, str | None]:
    """Container, pod and namespace names and ids, as CRI-O, containerd and podman keep them."""
    status_meta = _dict(status_dump.get("metadata"))
    labels = _dict(status_dump.get("labels"))
    return {
        "name": _first(
            ann.get("io.kubernetes.container.name"),
            ann.get("io.kubernetes.cri.container-name"),
            _crio_metadata_name(ann),
            _str(status_meta.get("name")),
            _str(labels.get("io.kubernetes.container.name")),
            _str(config.get("name")),
        ),
        "pod": _pod_field(ann, labels, "io.kubernetes.pod.name", "sandbox-name"),
        "namespace": _pod_field(ann, labels, "io.kubernetes.pod.namespace", "sandbox-namespace"),
        "pod_uid": _pod_field(ann, labels, "io.kubernetes.pod.uid", "sandbox-uid"),
        "pod_id": _first(
            _str(config.get("pod")),
            ann.get("io.kubernetes.cri-o.SandboxID"),
            ann.get("io.kubernetes.cri.sandbox-id"),
        ),
    }


def _image(ann: dict[str, str], config: dict[str, Any]) -> dict[str, str | None]:
    return {
        "image": _first(
            _str(config.get("rootfsImageName")),
            ann.get("io.kubernetes.cri-o.ImageName"),
            ann.get("io.kubernetes.cri.image-name"),
            _str(config.get("rootfsImage")),
            _str(config.get("rawImageName")),
        ),
        "image_id": _first(_str(config.get("rootfsImageRef")), _str(config.get("rootfsImageID"))),
    }


def _times(
    ann: dict[str, str],
    config: dict[str, Any],
    status_dump: dict[str, Any],
    checkpoint_mtime: int | None,
) -> dict[str, str | None]:
    checkpointed = _time(config.get("checkpointedTime"))
    if checkpointed is None and checkpoint_mtime:
        # podman and CRI-O do not record it; the checkpoint/ directory's tar mtime is the
        # time the images were written (second resolution).
        checkpointed = (
            datetime.fromtimestamp(checkpoint_mtime, tz=UTC).isoformat().replace("+00:00", "Z")
        )
    return {
        "created_at": _first(
            _time(config.get("createdTime")),
            ann.get("io.kubernetes.cri-o.Created"),
            _ns_time(status_dump.get("created_at")),
        ),
        "checkpointed_at": checkpointed,
    }


def _spec_env(process: dict[str, Any]) -> list[EnvVar]:
    env: list[EnvVar] = []
    for item in process.get("env") or []:
        if isinstance(item, str):
            key, _, value = item.partition("=")
            env.append(EnvVar(name=key, value=value))
    return env


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
    ann = _annotations(spec, status_dump)
    process = _dict(spec.get("process"))
    return ContainerInfo(
        id=_first(_str(config.get("id")), _str(status_dump.get("id"))),
        config_name=_str(config.get("name")),
        **_kubernetes_names(ann, config, status_dump),
        **_image(ann, config),
        runtime=_first(_str(config.get("runtime")), _str(config.get("ociRuntime"))),
        hostname=_first(hostname, _str(spec.get("hostname"))),
        domainname=domainname,
        **_times(ann, config, status_dump, checkpoint_mtime),
        ip=_first(ann.get("io.kubernetes.cri-o.IP.0"), _first_ip(network_status)),
        host_pid=_positive_int(_dict(status).get("Pid")),
        log_path=_first(_str(status_dump.get("log_path")), ann.get("io.kubernetes.cri-o.LogPath")),
        args=[a for a in process.get("args") or [] if isinstance(a, str)],
        cwd=_str(process.get("cwd")),
        spec_env=_spec_env(process),
        annotations=ann,
        labels=_labels(_dict(spec.get("annotations")), status_dump),
    )
