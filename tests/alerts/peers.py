"""Real peers for the alert cluster tests: the receiver on its own event loop thread, and a
Prometheus Alertmanager process built from its Go module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry

from forensic_checkpoint.controller.alerts import AlertReceiverConfig, serve_alerts
from forensic_checkpoint.controller.alerts.backend import CaptureBackend
from forensic_checkpoint.controller.alerts.server import AlertServer
from forensic_checkpoint.k8s.alert_captures import RBAC_RULES
from forensic_checkpoint.k8s.client import ApiClient, close, from_client_certificate
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-alertmanager.sh"


class ReceiverThread:
    """``serve_alerts`` on an event loop in a daemon thread, as the operator would run it in
    kopf's loop; the test thread stays synchronous."""

    def __init__(self, config: AlertReceiverConfig, backend: CaptureBackend) -> None:
        self.registry = CollectorRegistry()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.server: AlertServer = self._call(serve_alerts(config, backend, registry=self.registry))

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=30)

    @property
    def url(self) -> str:
        return self.server.url

    def count(self, source: str, reason: str) -> float:
        value = self.registry.get_sample_value(
            "forensic_checkpoint_alerts_total", {"source": source, "reason": reason}
        )
        return value or 0.0

    def stop(self) -> None:
        self._call(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def receiver_identity(dev_cluster: Any, admin: ApiClient, suffix: str) -> ApiClient:
    """An API client of a fresh identity that holds exactly the receiver's ``RBAC_RULES``
    (``forensic-checkpoint-alerts-<suffix>``, a client certificate of the dev cluster's CA)."""
    identity = f"forensic-checkpoint-alerts-{suffix}"
    access.create_cluster_role(admin, identity, RBAC_RULES)
    access.bind_cluster_role(admin, identity, identity, [access.user(identity)])
    cert = dev_cluster.issue_client_certificate(identity)
    return from_client_certificate(
        dev_cluster.server, cert.cert, cert.key, ca_file=dev_cluster.ca_file
    )


def fresh_namespace(dev_cluster: Any, prefix: str) -> tuple[str, str, ApiClient]:
    """A new namespace ``<prefix>-<suffix>`` for a cluster test of the receiver: the suffix
    (for the test's other names), the namespace and an admin client. Skips the test without
    the local dev cluster, whose CA mints the receiver's identity."""
    if not dev_cluster.local:
        pytest.skip("needs the local dev cluster (its CA mints the receiver's identity)")
    suffix = secrets.token_hex(3)
    namespace = f"{prefix}-{suffix}"
    admin = dev_cluster.admin_client()
    access.ensure_namespace(admin, namespace)
    return suffix, namespace, admin


def tear_down(
    receiver: ReceiverThread, admin: ApiClient, api: ApiClient, *, policy: str, namespace: str
) -> None:
    """Stop a cluster test's receiver; delete its capture policy and namespace; close the
    client of its identity."""
    receiver.stop()
    apiserver.request(
        admin, "DELETE", f"/apis/forensic-checkpoint.dev/v1alpha1/forensiccapturepolicies/{policy}"
    )
    access.delete_namespace(admin, namespace)
    # The next module counts the alert captures already holding slots before its storm; ours
    # must not vanish in between (when the namespace controller gets to them), so wait for the
    # namespace to be gone. A finalizer that keeps it keeps its captures counted, which is stable.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and access.namespace_exists(admin, namespace):
        time.sleep(0.5)
    close(api)


def alertmanager_bin() -> Path:
    """Build (or find in the cache) Alertmanager and amtool; returns their directory."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, capture_output=True, text=True, timeout=1800
    )
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Alertmanager:
    """A real Alertmanager whose only receiver is our webhook, with a bearer token file."""

    def __init__(
        self, bin_dir: Path, work: Path, webhook_url: str, token_file: Path, *, repeat: str = "2s"
    ) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "route": {
                "receiver": "forensics",
                "group_by": ["alertname", "namespace"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": repeat,
            },
            "receivers": [
                {
                    "name": "forensics",
                    "webhook_configs": [
                        {
                            "url": webhook_url,
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {
                                    "type": "Bearer",
                                    "credentials_file": str(token_file),
                                }
                            },
                        }
                    ],
                }
            ],
        }
        work.mkdir(parents=True, exist_ok=True)
        (work / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.log = work / "alertmanager.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(bin_dir / "alertmanager"),
                    f"--config.file={work / 'alertmanager.yml'}",
                    f"--storage.path={work / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, 30, f"Alertmanager ready (see {self.log})")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"alertmanager exited; see {self.log}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def amtool(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.bin_dir / "amtool"), f"--alertmanager.url={self.url}", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.stdout

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextlib.contextmanager
def running_alertmanager(
    work: Path, webhook_url: str, token_file: Path, **kw: Any
) -> Iterator[Alertmanager]:
    if shutil.which("bash") is None:
        raise RuntimeError("bash is needed to build Alertmanager")
    manager = Alertmanager(alertmanager_bin(), work, webhook_url, token_file, **kw)
    try:
        yield manager
    finally:
        manager.stop()
