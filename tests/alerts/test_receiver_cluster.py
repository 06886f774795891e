"""Alerts from real senders become ForensicCheckpoints in a real API server.

The receiver runs with a least-privilege identity (exactly ``RBAC_RULES``). Prometheus
Alertmanager (built from its Go module) posts to it with a bearer token file; Falcosidekick
cannot be built here (see tests/alerts/data/README.md), so its captured payload shape is posted
over HTTP instead. No operator runs in these tests: the assertion is on the created object.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.alerts.helpers import payload
from tests.alerts.peers import (
    ReceiverThread,
    fresh_namespace,
    receiver_identity,
    running_alertmanager,
    tear_down,
    wait_for,
)

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.api.policy import ForensicCapturePolicy
from forensic_checkpoint.controller.alerts import AlertReceiverConfig, KubeCaptureBackend
from forensic_checkpoint.domain.alerts.capture import (
    ANNOTATION_ALERT,
    LABEL_ALERT_NAME,
    LABEL_FINGERPRINT,
    LABEL_POLICY,
    LABEL_SOURCE,
)
from forensic_checkpoint.domain.alerts.policy import Limits
from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint_dev import apiserver

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

POLICIES = "/apis/forensic-checkpoint.dev/v1alpha1/forensiccapturepolicies"
SECRET = "RANDOM_4105_KEY"  # what the counter pod's memory holds (counter-blog truth)


@dataclass
class AlertEnv:
    namespace: str
    admin: ApiClient
    receiver: ReceiverThread
    token: str
    token_file: Path
    pod: dict[str, Any]
    shell_pod: dict[str, Any]

    def checkpoints(self, source: str) -> list[ForensicCheckpoint]:
        selector = f"{LABEL_SOURCE}={source}"
        return ForensicCheckpoints(self.admin).list(
            namespace=self.namespace, label_selector=selector
        )


@pytest.fixture(scope="module")
def alert_env(dev_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertEnv]:
    suffix, namespace, admin = fresh_namespace(dev_cluster, "alerts")
    node = dev_cluster.nodes[0].name
    pod = dev_cluster.create_running_pod(
        "counter", node, namespace=namespace, containers=["counter"]
    )
    # The Falco test's own pod: the per-pod cooldown would (rightly) hold back a second capture
    # of "counter" after the Alertmanager test.
    shell_pod = dev_cluster.create_running_pod(
        "shell-target", node, namespace=namespace, containers=["counter", "sidecar"]
    )
    api = receiver_identity(dev_cluster, admin, suffix)
    policy = ForensicCapturePolicy.model_validate(
        {
            "metadata": {"name": f"counter-secrets-{suffix}"},
            "spec": {
                "match": {
                    "namespaces": [namespace],
                    "alertNames": ["CounterSecretLeak", "Terminal shell in container"],
                },
                "capture": {"analysis": {"searches": [SECRET]}},
                "cooldownSeconds": 3600,
            },
        }
    )
    apiserver.request(admin, "POST", POLICIES, body=policy.to_kube())
    work = tmp_path_factory.mktemp("alerts")
    token = secrets.token_urlsafe(24)
    token_file = work / "token"
    token_file.write_text(token)
    config = AlertReceiverConfig(
        host="127.0.0.1",
        port=0,
        token_file=token_file,
        limits=Limits(rate_per_second=1.0, burst=5, max_concurrent=5),
        refresh_seconds=0.5,
    )
    receiver = ReceiverThread(config, KubeCaptureBackend(api))
    try:
        yield AlertEnv(namespace, admin, receiver, token, token_file, pod, shell_pod)
    finally:
        tear_down(receiver, admin, api, policy=policy.name, namespace=namespace)


def test_alertmanager_alert_for_the_counter_pod_makes_exactly_one_checkpoint(
    alert_env: AlertEnv, tmp_path: Path
) -> None:
    env = alert_env
    receiver = env.receiver
    labels = [
        f"namespace={env.namespace}",
        "pod=counter",
        "container=counter",
        "severity=critical",
    ]
    webhook = f"{receiver.url}/v1/alerts/alertmanager"
    with running_alertmanager(tmp_path / "am", webhook, env.token_file) as am:
        am.amtool("alert", "add", "CounterSecretLeak", *labels, "--annotation=summary=leak")
        wait_for(lambda: receiver.count("alertmanager", "Capture") == 1, 30, "the capture")

        # Alertmanager re-sends the firing group every repeat_interval (2 s): duplicates.
        wait_for(lambda: receiver.count("alertmanager", "Duplicate") >= 2, 30, "re-sends")

        # A second alert joins the group for the same pod: the group is re-sent with both.
        am.amtool("alert", "add", "CounterSecretLeak", *labels, "instance=10.0.0.7:8088")
        wait_for(lambda: receiver.count("alertmanager", "Cooldown") >= 1, 30, "the grouped alert")

        # Both resolve: Alertmanager sends the resolved notification.
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for extra in ([], ["instance=10.0.0.7:8088"]):
            am.amtool("alert", "add", "CounterSecretLeak", *labels, *extra, f"--end={now}")
        wait_for(lambda: receiver.count("alertmanager", "Resolved") >= 2, 30, "the resolution")

    assert receiver.count("alertmanager", "Capture") == 1
    assert receiver.count("alertmanager", "CreateFailed") == 0
    (fc,) = env.checkpoints("alertmanager")
    assert fc.spec.pod_name == "counter"
    assert fc.spec.containers == ["counter"]
    assert fc.spec.analysis.searches == [SECRET]
    assert fc.spec.reason is not None and fc.spec.reason.alert is not None
    alert = fc.spec.reason.alert
    assert (alert.source, alert.name, alert.severity) == (
        "alertmanager",
        "CounterSecretLeak",
        "critical",
    )
    labels_on_fc = fc.metadata["labels"]
    assert labels_on_fc[LABEL_SOURCE] == "alertmanager"
    assert labels_on_fc[LABEL_ALERT_NAME] == "CounterSecretLeak"
    assert labels_on_fc[LABEL_FINGERPRINT] == alert.fingerprint
    assert labels_on_fc[LABEL_POLICY].startswith("counter-secrets-")
    assert '"pod":"counter"' in fc.metadata["annotations"][ANNOTATION_ALERT]


def test_falco_event_makes_one_checkpoint_for_the_container_it_names(alert_env: AlertEnv) -> None:
    env = alert_env
    status = env.shell_pod["status"]["containerStatuses"][0]
    assert status["name"] == "counter"
    full_id = status["containerID"].split("://", 1)[1]
    event = payload("falcosidekick-terminal-shell.json")
    event["uuid"] = f"uuid-{secrets.token_hex(8)}"
    fields = event["output_fields"]
    fields["k8s.ns.name"] = env.namespace
    fields["k8s.pod.name"] = "shell-target"
    # Only the 12-character container.id, as a rule without container.name/full_id gives.
    del fields["container.name"], fields["container.full_id"]
    fields["container.id"] = full_id[:12]
    url = f"{env.receiver.url}/v1/alerts/falcosidekick"
    headers = {"Authorization": f"Bearer {env.token}"}

    first = requests.post(url, json=event, headers=headers, timeout=30)
    again = requests.post(url, json=event, headers=headers, timeout=30)
    test = requests.post(
        url, json=payload("falcosidekick-test-rule.json"), headers=headers, timeout=30
    )
    anonymous = requests.post(url, json=event, timeout=30)

    assert first.status_code == 200, first.text
    assert [d["reason"] for d in first.json()["decisions"]] == ["Capture"]
    assert [d["reason"] for d in again.json()["decisions"]] == ["Duplicate"]
    assert [d["reason"] for d in test.json()["decisions"]] == ["TestEvent"]
    assert anonymous.status_code == 401
    (fc,) = env.checkpoints("falco")
    assert fc.spec.pod_name == "shell-target"
    assert fc.spec.containers == ["counter"]  # of two, the one whose ID the event names
    assert fc.spec.reason is not None and fc.spec.reason.alert is not None
    assert fc.spec.reason.alert.fingerprint == event["uuid"]
    assert fc.metadata["labels"][LABEL_ALERT_NAME] == "Terminal_shell_in_container"


def test_receiver_identity_cannot_do_more_than_it_needs(alert_env: AlertEnv) -> None:
    """The create went through with RBAC_RULES only; a delete with that identity is refused."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"forensic-checkpoint-alerts-{alert_env.namespace.removeprefix('alerts-')}",
            "resourceAttributes": {
                "group": "forensic-checkpoint.dev",
                "resource": "forensiccheckpoints",
                "verb": "delete",
                "namespace": alert_env.namespace,
            },
        },
    }
    answer = apiserver.request(
        alert_env.admin,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body=review,
    )
    assert answer["status"]["allowed"] is False


def test_the_policy_status_counts_what_it_matched_and_created(alert_env: AlertEnv) -> None:
    """After the two tests above, the policy's status (written by the receiver's identity, on
    the status subresource, at a policy refresh) says what it did: kubectl get fcpol shows it."""
    env = alert_env
    url = f"{env.receiver.url}/v1/alerts/falcosidekick"
    headers = {"Authorization": f"Bearer {env.token}"}
    name = next(
        p["metadata"]["name"]
        for p in apiserver.request(env.admin, "GET", POLICIES)["items"]
        if p["metadata"]["name"].startswith("counter-secrets-")
        and env.namespace in p["spec"]["match"]["namespaces"]
    )
    found: dict[str, Any] = {}

    def written() -> bool:
        # A refresh runs on a request once the policies are older than refresh_seconds.
        requests.post(
            url, json=payload("falcosidekick-test-rule.json"), headers=headers, timeout=30
        )
        found.update(apiserver.request(env.admin, "GET", f"{POLICIES}/{name}"))
        return (found.get("status") or {}).get("capturesCreated") == 2

    wait_for(written, 30, "the policy's status")
    status = found["status"]
    assert status["alertsMatched"] >= 2
    assert status["observedGeneration"] == found["metadata"]["generation"]
    [accepted] = [c for c in status["conditions"] if c["type"] == "Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("True", "InUse")
    created = {f"{env.namespace}/{fc.metadata['name']}" for s in ("alertmanager", "falco")
               for fc in env.checkpoints(s)}  # fmt: skip
    assert status["lastCapture"] in created
    assert status["lastMatchTime"]
