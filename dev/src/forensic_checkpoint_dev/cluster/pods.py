"""Pods that look scheduled and running, without a scheduler or a real kubelet.

``create_running_pod`` creates the pod bound to a node (``spec.nodeName``), then writes the
status a kubelet would (phase Running, Ready, a running ``containerStatuses`` entry per
container) through the ``status`` subresource, so watchers and the fake kubelet see a normal
running pod. Container IDs and ``hostIP`` are what the node's runtime and kubelet would write:
``containerd://<id>`` and the node's InternalIP.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s

from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint_dev.apiserver import MERGE_PATCH, call
from forensic_checkpoint_dev.kubelet.faults import ARCHIVE_ANNOTATION, FAULT_ANNOTATION

DEFAULT_IMAGE = "registry.k8s.io/pause:3.10"


def create_running_pod(
    api: ApiClient,
    namespace: str,
    name: str,
    node: str,
    *,
    containers: Sequence[str] = ("app",),
    image: str = DEFAULT_IMAGE,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    fault: str | None = None,
    archive: str | None = None,
    running: bool = True,
) -> dict[str, Any]:
    """Create ``namespace/name`` on ``node`` and mark it Running; returns the pod as stored.

    ``fault`` and ``archive`` set the fake kubelet's annotations (see ``faults``);
    ``running=False`` leaves the containers in ``waiting`` (the kubelet then fails a
    checkpoint with "container ... not found").
    """
    notes = dict(annotations or {})
    if fault is not None:
        notes[FAULT_ANNOTATION] = fault
    if archive is not None:
        notes[ARCHIVE_ANNOTATION] = archive
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {}), "annotations": notes},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": c, "image": image} for c in containers],
        },
    }
    pods = k8s.CoreV1Api(api)
    created = call(f"create pod {namespace}/{name}", pods.create_namespaced_pod, namespace, pod)
    uid = created["metadata"]["uid"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def container_status(c: str) -> dict[str, Any]:
        cid = hashlib.sha256(f"{uid}/{c}".encode()).hexdigest()
        state = {"running": {"startedAt": now}} if running else {"waiting": {"reason": "Created"}}
        return {
            "name": c,
            "image": image,
            "imageID": f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
            "containerID": f"containerd://{cid}",
            "ready": running,
            "started": running,
            "restartCount": 0,
            "state": state,
        }

    ready = "True" if running else "False"
    host_ip = _internal_ip(api, node)
    status = {
        "status": {
            "phase": "Running" if running else "Pending",
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": "10.244.0.10",
            "podIPs": [{"ip": "10.244.0.10"}],
            "startTime": now,
            "conditions": [
                {"type": t, "status": ready if t != "PodScheduled" else "True"}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [container_status(c) for c in containers],
        }
    }
    return dict(
        call(
            f"patch pod {namespace}/{name} status",
            pods.patch_namespaced_pod_status,
            name,
            namespace,
            status,
            _content_type=MERGE_PATCH,
        )
    )


def _internal_ip(api: ApiClient, node: str) -> str:
    """The node's registered InternalIP, as the kubelet writes it into ``hostIP``; loopback for
    a node that is not (yet) registered."""
    with contextlib.suppress(ClusterError):
        found = call(f"read node {node}", k8s.CoreV1Api(api).read_node, node)
        for address in (found.get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                return str(address["address"])
    return "127.0.0.1"
