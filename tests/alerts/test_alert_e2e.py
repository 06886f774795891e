"""The whole chain: a real Alertmanager alert for the counter pod -> receiver -> one
ForensicCheckpoint -> operator -> node agent -> kubelet (the dev cluster's fake kubelet, serving
the real CRI-O blog archive) -> analysis -> Completed, with the secret found in memory.

Runs on a one-node dev cluster of its own, with the operator and agent as processes under the
RBAC of deploy/rbac (``forensic_checkpoint_dev.stack.LocalStack``), and the receiver under its
own least-privilege identity.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.alerts.peers import ReceiverThread, running_alertmanager, wait_for

from forensic_checkpoint.api.policy import ForensicCapturePolicy
from forensic_checkpoint.controller.alerts import AlertReceiverConfig, KubeCaptureBackend
from forensic_checkpoint.domain.alerts.capture import LABEL_SOURCE
from forensic_checkpoint.domain.alerts.policy import Limits
from forensic_checkpoint.k8s.alert_captures import RBAC_RULES
from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
from forensic_checkpoint.k8s.client import ApiClient, close, from_client_certificate
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access, binaries
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.cluster.pods import create_running_pod
from forensic_checkpoint_dev.stack import LocalStack

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAMESPACE = "alerts-e2e"
DATA = Path(__file__).resolve().parents[1] / "data"
#: The CRI-O blog recording, named on the pod (the fake kubelets' default is containerd's).
BLOG_ARCHIVE = DATA / "counter-blog-crio.tar.zst"
BLOG_TRUTH = json.loads((DATA / "counter-blog-crio.truth.json").read_text())
SECRET = BLOG_TRUTH["memory_strings"][0]


@dataclass
class Chain:
    admin: ApiClient
    stack: LocalStack
    receiver: ReceiverThread
    token_file: Path


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    if binaries.missing():
        if not binaries.go_available():
            pytest.skip("cluster tools are not built and no Go toolchain is installed")
        binaries.ensure(build=True)
    root = tmp_path_factory.mktemp("alerts-e2e")
    cluster = DevCluster.start(root / "cluster", nodes=1, die_with_parent=True)
    stack: LocalStack | None = None
    receiver: ReceiverThread | None = None
    admin = cluster.admin_client()
    try:
        access.ensure_namespace(admin, NAMESPACE)
        create_running_pod(
            admin,
            NAMESPACE,
            "counter",
            "node-1",
            containers=("counter",),
            archive=str(BLOG_ARCHIVE),
        )
        policy = ForensicCapturePolicy.model_validate(
            {
                "metadata": {"name": "counter-secrets"},
                "spec": {
                    "match": {"namespaces": [NAMESPACE], "severities": ["critical"]},
                    "capture": {"analysis": {"searches": [SECRET["value"]]}},
                },
            }
        )
        apiserver.request(
            admin,
            "POST",
            "/apis/forensic-checkpoint.dev/v1alpha1/forensiccapturepolicies",
            body=policy.to_kube(),
        )
        identity = "forensic-checkpoint-alert-receiver"
        access.create_cluster_role(admin, identity, RBAC_RULES)
        access.bind_cluster_role(admin, identity, identity, [access.user(identity)])
        cert = cluster.issue_client_certificate(identity)
        receiver_api = from_client_certificate(
            cluster.server, cert.cert, cert.key, ca_file=cluster.ca_file
        )
        stack = LocalStack.prepare(cluster, root / "stack")
        stack.start_agent("node-1")
        stack.start_operator([NAMESPACE])
        token_file = root / "alert-token"
        token_file.write_text(secrets.token_urlsafe(24))
        config = AlertReceiverConfig(
            host="127.0.0.1",
            port=0,
            token_file=token_file,
            limits=Limits(rate_per_second=1.0, burst=3, max_concurrent=3),
            refresh_seconds=0.5,
        )
        receiver = ReceiverThread(config, KubeCaptureBackend(receiver_api))
        yield Chain(admin, stack, receiver, token_file)
    finally:
        if receiver is not None:
            receiver.stop()
        if stack is not None:
            stack.stop()
        close(admin)
        cluster.stop()


def test_alert_for_the_counter_pod_completes_with_the_secret_found(
    chain: Chain, tmp_path: Path
) -> None:
    receiver = chain.receiver
    labels = [f"namespace={NAMESPACE}", "pod=counter", "container=counter", "severity=critical"]
    webhook = f"{receiver.url}/v1/alerts/alertmanager"
    with running_alertmanager(tmp_path / "am", webhook, chain.token_file) as am:
        am.amtool("alert", "add", "CounterSecretLeak", *labels)
        wait_for(lambda: receiver.count("alertmanager", "Capture") == 1, 30, "the capture")
        (item,) = ForensicCheckpoints(chain.admin).list(namespace=NAMESPACE)
        name = item.metadata["name"]
        obj = chain.stack.wait_phase(NAMESPACE, name, timeout=120)
        # While it ran, Alertmanager kept re-sending the firing alert.
        wait_for(lambda: receiver.count("alertmanager", "Duplicate") >= 1, 30, "a re-send")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        am.amtool("alert", "add", "CounterSecretLeak", *labels, f"--end={now}")
        wait_for(lambda: receiver.count("alertmanager", "Resolved") >= 1, 30, "the resolution")

    status = obj["status"]
    assert status["phase"] == "Completed", status
    (container,) = status["containers"]
    summary = container["summary"]
    assert summary["memoryHitCount"] == SECRET["occurrences"]
    assert {h["pid"] for h in summary["memoryHits"]} == set(SECRET["found_in_pids"])
    assert {h["pattern"] for h in summary["memoryHits"]} == {SECRET["value"]}
    assert obj["metadata"]["labels"][LABEL_SOURCE] == "alertmanager"
    assert obj["spec"]["reason"]["alert"]["name"] == "CounterSecretLeak"
    # Exactly one, after the re-sends and the resolution.
    assert len(ForensicCheckpoints(chain.admin).list(namespace=NAMESPACE)) == 1
    assert receiver.count("alertmanager", "Capture") == 1
