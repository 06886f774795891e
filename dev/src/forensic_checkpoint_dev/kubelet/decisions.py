"""The fake kubelet's state and decisions: node registration and status, the call log,
authentication and authorisation as a kubelet with webhook auth does them, and the checkpoint
handler with its faults. The HTTP server (``fake_kubelet``) only moves bytes. Just over 400
lines: one class answers every kubelet outcome (the statuses and bodies of kubelet's
server.go), and splitting it would scatter that one table of answers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from kubernetes import client as k8s

from forensic_checkpoint.errors import ClusterError, ConfigError, ForensicCheckpointError
from forensic_checkpoint.k8s.client import from_kubeconfig
from forensic_checkpoint.k8s.reviews import subject_access_review, token_review
from forensic_checkpoint_dev.apiserver import STRATEGIC_PATCH, call
from forensic_checkpoint_dev.kubelet.config import KubeletConfig, copy_archive
from forensic_checkpoint_dev.kubelet.faults import (
    ARCHIVE_ANNOTATION,
    CANCELED,
    DEADLINE_EXCEEDED,
    FAULT_ANNOTATION,
    Fault,
    NodeSettings,
    parse_fault,
)

KUBELET_VERSION = "v1.36.3"
FAKE_NODE_TAINT = {
    "key": "forensic-checkpoint.dev/fake-kubelet",
    "value": "true",
    "effect": "NoSchedule",
}
_TIMEOUT_VALUE = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    #: The client went away during the call: the answer has nowhere to go.
    canceled: bool = False


class Caller:
    """The client of one checkpoint call as the kubelet's request context sees it: the CRI
    call runs on ``request.Request.Context()``, which Go cancels when the connection closes."""

    def __init__(self, sock: socket.socket | None) -> None:
        self._sock = sock

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; ``False`` as soon as the client has disconnected."""
        deadline = time.monotonic() + seconds
        if self._sock is None:
            time.sleep(max(0.0, seconds))
            return True
        poller = select.poll()
        # RDHUP: the peer closed (FIN); HUP/ERR: reset. The request body was read already.
        poller.register(self._sock.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if poller.poll(min(left, 0.1) * 1000):
                return False


def _log(text: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")
    sys.stderr.write(f"{stamp} {text}\n")


def text_reply(status: int, text: str) -> Reply:
    return Reply(status, text.encode())


class FakeKubelet:
    """The node's state and decisions; the HTTP handler only moves bytes."""

    def __init__(self, config: KubeletConfig) -> None:
        self.config = config
        self.api = from_kubeconfig(config.kubeconfig)
        self.settings = NodeSettings(
            runtime_version=config.runtime_version,
            runtime_request_timeout=config.runtime_request_timeout,
        )
        self.port = 0
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []
        # Serialises writes to one target path, as the runtime would hold the container lock.
        self._write_lock = threading.Lock()

    # --- node registration -----------------------------------------------------------------

    def register(self) -> None:
        name = self.config.node_name
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            # It runs no pods: the scheduler must leave it alone (tests bind pods by nodeName).
            "spec": {"taints": [FAKE_NODE_TAINT]},
        }
        with contextlib.suppress(ClusterError):  # 409: registered by an earlier run
            call(f"create node {name}", k8s.CoreV1Api(self.api).create_node, node)
        self.publish_status()

    def publish_status(self) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": self.config.address},
                    {"type": "Hostname", "address": self.config.node_name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                "nodeInfo": {
                    "containerRuntimeVersion": self.settings.runtime_version,
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "osImage": "forensic-checkpoint fake node",
                    "kernelVersion": os.uname().release,
                    "machineID": self.config.node_name,
                    "systemUUID": self.config.node_name,
                    "bootID": self.config.node_name,
                },
                "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "fake kubelet is posting ready status",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
            }
        }
        call(
            f"patch node {self.config.node_name} status",
            k8s.CoreV1Api(self.api).patch_node_status,
            self.config.node_name,
            status,
            _content_type=STRATEGIC_PATCH,
        )

    # --- call log --------------------------------------------------------------------------

    def record(
        self,
        path: str,
        status: int,
        user: str | None,
        *,
        canceled: bool = False,
        received: float | None = None,
    ) -> None:
        """``time`` is when the call was answered, ``received`` when it arrived (epoch s)."""
        now = time.time()
        entry = {
            "path": path,
            "status": status,
            "user": user,
            "time": now,
            "received": now if received is None else received,
        }
        if canceled:
            entry["canceled"] = True  # the client disconnected during the dump
        with self._lock:
            self._calls.append(entry)

    def calls(self) -> dict[str, Any]:
        with self._lock:
            return {"count": len(self._calls), "calls": list(self._calls)}

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # --- authentication and authorisation --------------------------------------------------

    def authenticate(
        self, peer_cert: dict[str, Any] | None, authorization: str | None
    ) -> tuple[str, tuple[str, ...], str] | None:
        """(user, groups, uid) like the kubelet's authenticator union: x509 first, then token."""
        if peer_cert:
            user, groups = "", []
            for rdn in peer_cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        user = value
                    elif key == "organizationName":
                        groups.append(value)
            if user:
                return user, (*groups, "system:authenticated"), ""
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
            if token:
                result = token_review(self.api, token)
                if result.authenticated:
                    return result.username, result.groups, result.uid
        return None

    # --- the checkpoint handler ------------------------------------------------------------

    def checkpoint(
        self,
        path: str,
        query: str,
        peer_cert: dict[str, Any] | None,
        authorization: str | None,
        caller: Caller | None = None,
    ) -> Reply | Fault:
        """The kubelet's answer, or a ``Fault`` with ``reset`` the handler must act on.
        Every call is recorded, whatever its outcome."""
        received = time.time()
        user: list[str] = []
        result = self._checkpoint(
            path, query, peer_cert, authorization, user_out=user, caller=caller or Caller(None)
        )
        self.record(
            path,
            result.status if isinstance(result, Reply) else 0,
            next(iter(user), None),
            canceled=isinstance(result, Reply) and result.canceled,
            received=received,
        )
        return result

    def _checkpoint(
        self,
        path: str,
        query: str,
        peer_cert: dict[str, Any] | None,
        authorization: str | None,
        *,
        user_out: list[str],
        caller: Caller,
    ) -> Reply | Fault:
        if not self.settings.checkpoint_gate:
            return text_reply(404, "404 page not found\n")  # route not registered: before auth
        parts = path.removeprefix("/checkpoint/").split("/")
        if len(parts) != 3 or not all(parts):
            return text_reply(404, "404 page not found\n")
        namespace, pod_name, container = (unquote(p) for p in parts)
        try:
            identity = self.authenticate(peer_cert, authorization)
        except ForensicCheckpointError:
            identity = None  # authenticator error: the kubelet answers 401 too
        if identity is None:
            return text_reply(401, "Unauthorized")
        user, groups, uid = identity
        user_out.append(user)
        try:
            allowed = subject_access_review(
                self.api,
                user,
                groups,
                "create",
                "nodes",
                "checkpoint",
                self.config.node_name,
                uid=uid,
            )
        except ForensicCheckpointError:
            return text_reply(
                500,
                f"Authorization error (user={user}, verb=create, resource=nodes, "
                "subresource=checkpoint)",
            )
        if not allowed:
            return text_reply(
                403,
                f"Forbidden (user={user}, verb=create, resource=nodes, "
                "subresource(s)=[checkpoint])\n",
            )
        return self._checkpoint_pod(namespace, pod_name, container, query, caller)

    def _find_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        pods = call(
            f"list pods in {namespace}",
            k8s.CoreV1Api(self.api).list_namespaced_pod,
            namespace,
            field_selector=f"spec.nodeName={self.config.node_name}",
        )
        for pod in pods.get("items", []):
            if pod["metadata"]["name"] == name:
                return dict(pod)
        return None

    def _checkpoint_pod(
        self, namespace: str, pod_name: str, container: str, query: str, caller: Caller
    ) -> Reply | Fault:
        try:
            pod = self._find_pod(namespace, pod_name)
        except ForensicCheckpointError:
            pod = None
        if pod is None:
            return text_reply(404, "pod does not exist")
        spec = pod.get("spec", {})
        names = {
            c.get("name")
            for key in ("containers", "initContainers", "ephemeralContainers")
            for c in spec.get(key) or []
        }
        if container not in names:
            return text_reply(404, f"container {container} does not exist")
        timeout = 0
        timeouts = parse_qs(query, keep_blank_values=True).get("timeout")
        if timeouts:
            if not _TIMEOUT_VALUE.match(timeouts[-1]):
                return text_reply(404, "cannot parse value of timeout parameter")
            timeout = int(timeouts[-1])
        return self._run(pod, container, timeout, caller)

    def _run(  # noqa: PLR0911 - one return per kubelet outcome
        self, pod: dict[str, Any], container: str, timeout: int, caller: Caller
    ) -> Reply | Fault:
        """The part behind the kubelet's CheckpointContainer(): findContainer, then the CRI."""
        meta = pod["metadata"]
        target = f"{meta['namespace']}/{meta['name']}/{container}"
        failed = f"checkpointing of {target} failed"
        annotations = meta.get("annotations") or {}
        try:
            fault = parse_fault(annotations.get(FAULT_ANNOTATION))
        except ConfigError as exc:
            return text_reply(500, f"{failed} ({exc.message})")
        if fault.gate_off:
            return text_reply(404, "404 page not found\n")
        if not _running(pod, container):
            # findContainer() finds no running container: the kubelet fails before the CRI.
            return text_reply(500, f"{failed} (container {container} not found)")
        # cri-client CheckpointContainer: a timeout below runtimeRequestTimeout is raised to it.
        budget = self.settings.deadline(timeout)
        dump = budget if fault.hang else min(fault.latency, budget)
        started = time.monotonic()
        if not caller.wait(dump):
            return self._canceled(pod, container, fault, dump - (time.monotonic() - started))
        if fault.hang or fault.latency > budget:
            return text_reply(500, f"{failed} ({DEADLINE_EXCEEDED})")
        if fault.reset:
            return fault
        error = fault.error or self.settings.fail_with
        if error:
            return text_reply(500, f"{failed} ({error})")
        try:
            location = self._write_archive(pod, container, annotations.get(ARCHIVE_ANNOTATION))
        except OSError as exc:
            return text_reply(500, f"{failed} (rpc error: code = Unknown desc = {exc})")
        return Reply(200, json.dumps({"items": [str(location)]}).encode(), "application/json")

    def _canceled(self, pod: dict[str, Any], container: str, fault: Fault, left: float) -> Reply:
        """The client disconnected during the dump: containerd aborts it ("context canceled")
        and writes nothing, unless the archive was already written (``late-file``)."""
        meta = pod["metadata"]
        target = f"{meta['namespace']}/{meta['name']}/{container}"
        text = f"checkpointing of {target} failed ({CANCELED})"
        if not fault.late_file or fault.hang:
            _log(
                f'CheckpointContainer for "{target}" failed: {CANCELED}: the client '
                "disconnected during the dump; no archive written"
            )
            return Reply(500, text.encode(), canceled=True)
        time.sleep(max(0.0, left))
        location = self._write_archive(
            pod, container, meta.get("annotations", {}).get(ARCHIVE_ANNOTATION)
        )
        _log(
            f'CheckpointContainer for "{target}": the client disconnected, but the runtime had '
            f"already written the archive: {location}"
        )
        return Reply(500, text.encode(), canceled=True)

    def _write_archive(self, pod: dict[str, Any], container: str, source: str | None) -> Path:
        meta = pod["metadata"]
        # kubelet.go: checkpoint-<podFullName>-<container>-<RFC3339>.tar, one-second resolution;
        # a second request in the same second gets the same name and overwrites the first.
        stamp = datetime.now().astimezone().replace(microsecond=0).isoformat()
        stamp = stamp.replace("+00:00", "Z")
        name = f"checkpoint-{meta['name']}_{meta['namespace']}-{container}-{stamp}.tar"
        location = self.config.checkpoint_dir / name
        archive = Path(source) if source else self.config.default_archive
        with self._write_lock:
            fd = os.open(location, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as out:
                copy_archive(archive, out)
        return location


def _running(pod: dict[str, Any], container: str) -> bool:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == container:
                return "running" in (cs.get("state") or {})
    return False
