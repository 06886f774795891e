"""The receiver's concurrency cap against a real API server (issue 15, item 4).

A tenant must not be able to switch alert-driven capture off for the whole cluster by creating
ForensicCheckpoints with the ``alert-source`` label, and a refusal at the cap must rest on a
fresh count: after a quiet period, captures that finished meanwhile must not refuse the first
alerts of an incident (Falco does not resend).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from tests.alerts.peers import ReceiverThread, receiver_identity

from forensic_checkpoint.api.policy import ForensicCapturePolicy
from forensic_checkpoint.controller.alerts import AlertReceiverConfig, KubeCaptureBackend
from forensic_checkpoint.domain.alerts.capture import LABEL_SOURCE
from forensic_checkpoint.domain.alerts.policy import Limits
from forensic_checkpoint.k8s.client import ApiClient, close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.alert_stack import notification
from forensic_checkpoint_dev.cluster import access

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

POLICIES = "/apis/forensic-checkpoint.dev/v1alpha1/forensiccapturepolicies"
CHECKPOINTS = "/apis/forensic-checkpoint.dev/v1alpha1/namespaces/{ns}/forensiccheckpoints"
PODS = ("victim-a", "victim-b", "victim-c")


@dataclass
class CapEnv:
    namespace: str
    tenant_namespace: str
    admin: ApiClient
    api: ApiClient
    token: str
    token_file: Any

    def receiver(self, **config: Any) -> ReceiverThread:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "token_file": self.token_file,
            "limits": Limits(rate_per_second=10.0, burst=10, max_concurrent=1),
        }
        settings.update(config)
        return ReceiverThread(AlertReceiverConfig(**settings), KubeCaptureBackend(self.api))

    def alert(self, receiver: ReceiverThread, pod: str) -> str:
        """Post one firing Alertmanager alert for ``pod``; the decision's reason."""
        body = notification(
            self.namespace, [pod], name="IncidentStart", container="app", severity="critical"
        )
        answer = requests.post(
            f"{receiver.url}/v1/alerts/alertmanager",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        (decision,) = answer.json()["decisions"]
        return str(decision["reason"])


@pytest.fixture(scope="module")
def cap_env(dev_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapEnv]:
    if not dev_cluster.local:
        pytest.skip("needs the local dev cluster (its CA mints the receiver's identity)")
    suffix = secrets.token_hex(3)
    namespace, tenant = f"cap-{suffix}", f"tenant-{suffix}"
    admin = dev_cluster.admin_client()
    access.ensure_namespace(admin, namespace)
    access.ensure_namespace(admin, tenant)
    node = dev_cluster.nodes[0].name
    for pod in PODS:
        dev_cluster.create_running_pod(pod, node, namespace=namespace, containers=["app"])
    api = receiver_identity(dev_cluster, admin, suffix)
    policy = ForensicCapturePolicy.model_validate(
        {
            "metadata": {"name": f"incident-{suffix}"},
            "spec": {"match": {"namespaces": [namespace], "alertNames": ["IncidentStart"]}},
        }
    )
    apiserver.request(admin, "POST", POLICIES, body=policy.to_kube())
    token = secrets.token_urlsafe(24)
    token_file = tmp_path_factory.mktemp("cap") / "token"
    token_file.write_text(token)
    try:
        yield CapEnv(namespace, tenant, admin, api, token, token_file)
    finally:
        apiserver.request(admin, "DELETE", f"{POLICIES}/{policy.name}")
        access.delete_namespace(admin, tenant)
        access.delete_namespace(admin, namespace)
        close(api)


def _delete_all(env: CapEnv, namespace: str) -> None:
    apiserver.request(env.admin, "DELETE", CHECKPOINTS.format(ns=namespace))


def test_a_tenants_labelled_objects_do_not_fill_the_cap(cap_env: CapEnv) -> None:
    """Before the fix every object with the label counted: three tenant objects in the
    tenant's own namespace refused the receiver's first capture anywhere (cap 1)."""
    env = cap_env
    for index in range(3):
        fake = {
            "apiVersion": "forensic-checkpoint.dev/v1alpha1",
            "kind": "ForensicCheckpoint",
            "metadata": {
                "name": f"squat-{index}",
                "namespace": env.tenant_namespace,
                "labels": {LABEL_SOURCE: "falco"},
            },
            "spec": {"podName": f"whatever-{index}"},
        }
        apiserver.request(env.admin, "POST", CHECKPOINTS.format(ns=env.tenant_namespace), body=fake)
    receiver = env.receiver()
    try:
        assert env.alert(receiver, PODS[0]) == "Capture"
    finally:
        receiver.stop()
        _delete_all(env, env.tenant_namespace)
        _delete_all(env, env.namespace)


def test_after_a_quiet_period_the_first_alert_is_decided_on_a_fresh_count(
    cap_env: CapEnv,
) -> None:
    """Cap 1: a capture runs and completes; with the cached count not refreshed since (a long
    refresh period stands for the quiet period), the next incident's first alert must capture.
    Before the fix it was refused on the stale count (now: no queue, so QueueFull)."""
    env = cap_env
    limits = Limits(rate_per_second=10.0, burst=10, max_concurrent=1, max_queued=0)
    receiver = env.receiver(refresh_seconds=3600.0, count_fresh_seconds=0.0, limits=limits)
    try:
        assert env.alert(receiver, PODS[1]) == "Capture"
        assert env.alert(receiver, PODS[2]) == "QueueFull"  # the cap and the bound still hold
        (created,) = apiserver.request(env.admin, "GET", CHECKPOINTS.format(ns=env.namespace))[
            "items"
        ]
        name = created["metadata"]["name"]
        apiserver.request(
            env.admin,
            "PATCH",
            f"{CHECKPOINTS.format(ns=env.namespace)}/{name}/status",
            body={"status": {"phase": "Completed"}},
        )
        time.sleep(0.1)
        assert env.alert(receiver, PODS[2]) == "Capture"
    finally:
        receiver.stop()
        _delete_all(env, env.namespace)
