"""The operator's wiring of alerts, readiness and custody, end to end on the stack's dev cluster:
the operator process serves the alert webhooks (``--alerts-port``), fails captures on nodes
whose agent reports them unable to capture without calling their kubelet, copies the CRIU log
excerpt of a failed capture, and keeps a custody chain that verifies."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.factories import export_values, s3_client
from tests.operator.operator_e2e_support import (
    NAMESPACE,
    condition,
    create_pod,
    events,
    fake_node,
    kubelet_calls,
)

from forensic_checkpoint.api.custody import ActorKind, CustodyAction, CustodyEntry
from forensic_checkpoint.cli.main import main
from forensic_checkpoint.domain.evidence import checkpoint_custody, custody
from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.stack import LocalStack

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TESTS = Path(__file__).resolve().parents[1]
#: What the fake kubelets return by default (control_plane.DEFAULT_ARCHIVE): the blog's
#: counter checkpointed by containerd.
DEFAULT_TRUTH = json.loads((TESTS / "data" / "counter-blog-containerd.truth.json").read_text())
SECRET = DEFAULT_TRUTH["memory_strings"][0]
ALERTMANAGER = json.loads(
    (TESTS / "alerts" / "data" / "alertmanager-firing-group.json").read_text()
)
GROUP_PATH = "/apis/forensic-checkpoint.dev/v1alpha1"


def _chain(obj: dict[str, Any]) -> list[CustodyEntry]:
    chain = custody.parse_chain(obj["status"].get("custody") or [])
    verdict = custody.verify_chain(chain, obj["metadata"]["uid"])
    assert verdict.ok, verdict.problems
    return chain


# --- alerts -----------------------------------------------------------------------------------


@pytest.fixture
def capture_policy(stack: LocalStack) -> Iterator[str]:
    name = "fcp-e2e-critical"
    api = stack.cluster.admin_client()
    body = {
        "apiVersion": "forensic-checkpoint.dev/v1alpha1",
        "kind": "ForensicCapturePolicy",
        "metadata": {"name": name},
        "spec": {
            "match": {"namespaces": [NAMESPACE], "severities": ["critical"]},
            "capture": {"analysis": {"searches": [SECRET["value"]]}},
        },
    }
    try:
        apiserver.request(api, "POST", f"{GROUP_PATH}/forensiccapturepolicies", body=body)
        yield name
    finally:
        apiserver.request(api, "DELETE", f"{GROUP_PATH}/forensiccapturepolicies/{name}")
        close(api)


def _firing(pod: str, fingerprint: str) -> dict[str, Any]:
    """The captured Alertmanager notification, re-aimed at ``pod`` in the test namespace."""
    payload = copy.deepcopy(ALERTMANAGER)
    alert = payload["alerts"][0]
    alert["labels"].update(namespace=NAMESPACE, pod=pod, container="counter")
    alert["fingerprint"] = fingerprint
    alert["startsAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload["alerts"] = [alert]
    payload["commonLabels"]["namespace"] = payload["groupLabels"]["namespace"] = NAMESPACE
    return dict(payload)


def test_the_operators_receiver_turns_an_alert_into_a_completed_capture(
    stack: LocalStack, capture_policy: str
) -> None:
    create_pod(stack, "alerted", "node-1", containers=("counter",))
    fingerprint = secrets.token_hex(8)
    payload = _firing("alerted", fingerprint)
    # The policy cache refreshes in the background; the first answer may predate the policy.
    deadline = time.monotonic() + 30
    while True:
        answer = stack.post_alerts("alertmanager", payload)
        assert answer.status_code == 200, answer.text
        (decision,) = answer.json()["decisions"]
        if decision["reason"] != "NoMatchingPolicy" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert decision["reason"] == "Capture", decision
    namespace, name = decision["checkpoint"].split("/")
    assert namespace == NAMESPACE

    obj = stack.wait_phase(NAMESPACE, name, timeout=120)
    status = obj["status"]
    assert status["phase"] == "Completed", status
    (container,) = status["containers"]
    assert container["summary"]["memoryHitCount"] == SECRET["occurrences"]
    assert {h["pid"] for h in container["summary"]["memoryHits"]} == set(SECRET["found_in_pids"])
    assert obj["spec"]["reason"]["alert"]["policy"] == capture_policy
    assert len(kubelet_calls(stack, "node-1", "alerted")) == 1

    requested, captured = _chain(obj)
    assert requested.actor.kind is ActorKind.ALERT
    assert requested.actor.name == f"alertmanager/{fingerprint}"
    assert captured.action is CustodyAction.CAPTURED
    assert captured.sha256 == container["archive"]["sha256"]

    again = stack.post_alerts("alertmanager", payload).json()["decisions"][0]
    assert again["reason"] == "Duplicate"
    assert len(kubelet_calls(stack, "node-1", "alerted")) == 1


def test_the_receiver_refuses_a_sender_without_the_token(stack: LocalStack) -> None:
    import requests

    answer = requests.post(
        f"{stack.alerts_url}/v1/alerts/alertmanager", json=_firing("x", "00"), timeout=10
    )
    assert answer.status_code == 401


# --- readiness fail-fast ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"checkpointGate": False}, "CheckpointingDisabled"),
        ({"runtimeVersion": "containerd://1.7.24"}, "RuntimeUnsupported"),
    ],
)
def test_a_node_that_cannot_capture_fails_at_once_without_a_kubelet_call(
    stack: LocalStack, settings: dict[str, Any], reason: str
) -> None:
    node = fake_node(stack, "node-3")
    before = node.config()
    name = f"unready-{reason.lower()}"
    node.set_config(**settings)
    try:
        # A restarted agent runs its first readiness round at once (start_agent waits for it).
        stack.kill_agent("node-3")
        stack.start_agent("node-3")
        ready = stack.readiness("node-3")
        assert (ready["status"], ready["reason"]) == ("False", reason), ready
        create_pod(stack, name, "node-3", containers=("app",))
        stack.create_checkpoint(NAMESPACE, name, {"podName": name})
        obj = stack.wait_phase(NAMESPACE, name, timeout=60)
    finally:
        node.set_config(**{k: before[k] for k in settings})
        stack.kill_agent("node-3")
        stack.start_agent("node-3")
    assert stack.readiness("node-3")["status"] == "True"

    status = obj["status"]
    assert status["phase"] == "Failed" and status["reason"] == reason, status
    (container,) = status["containers"]
    assert container["reason"] == reason and container["remediation"]
    assert container.get("requestedAt") is None
    assert "Remediation:" in status["message"]
    assert condition(obj, "Ready")["reason"] == reason
    assert any(e["reason"] == reason and e["type"] == "Warning" for e in events(stack, name))
    assert kubelet_calls(stack, "node-3", name) == []
    # The Requested entry alone, still a valid chain. No annotation or alert names the creator:
    # the entry says so and names the creating program from managedFields as a hint.
    (requested,) = _chain(obj)
    assert requested.reason == checkpoint_custody.FROM_FIELD_MANAGER
    assert requested.actor.name == "unknown" and "field manager '" in (requested.message or "")


# --- a failed capture's CRIU log ---------------------------------------------------------------


def test_a_failed_capture_carries_the_criu_log_excerpt(stack: LocalStack) -> None:
    # The runtime leaves CRIU's log in the container's bundle and names it in the error; the
    # agent gets it from the node's criu-log-reader (the only process that sees the bundles).
    log = stack.criu_log_dir / "0f3e" / "criu-dump.log"
    log.parent.mkdir(parents=True)
    shutil.copy(TESTS / "readiness" / "data" / "containerd-tcp.dump.log", log)
    error = (
        'checkpointing container "0f3e" failed: runc did not terminate successfully: '
        f"exit status 1: criu failed: type NOTIFY errno 0 path= {log}"
    )
    create_pod(stack, "tcp-shell", "node-2", containers=("app",), fault=f"error={error}")
    stack.create_checkpoint(NAMESPACE, "tcp-shell", {"podName": "tcp-shell"})
    obj = stack.wait_phase(NAMESPACE, "tcp-shell")
    (container,) = obj["status"]["containers"]
    assert container["reason"] == "EstablishedTCPNeedsConfig", container
    assert "tcp-established" in container["remediation"]
    assert "Connected TCP socket" in container["criuLogExcerpt"]
    assert container["kubeletStatusCode"] == 500

    # A link planted as another container's criu-dump.log, to its bundle's config.json (the
    # environment, here text that would pass for a CRIU error): not followed, nothing read.
    bundle = stack.criu_log_dir / "0f3f"
    bundle.mkdir()
    (bundle / "config.json").write_text(
        '{"env": ["DB_PASSWORD=hunter2 Error (criu/sk-inet.c:188): Connected TCP socket"]}'
    )
    (bundle / "criu-dump.log").symlink_to(bundle / "config.json")
    create_pod(
        stack,
        "tcp-link",
        "node-2",
        containers=("app",),
        fault=f"error={error}".replace(str(log), str(bundle / "criu-dump.log")),
    )
    stack.create_checkpoint(NAMESPACE, "tcp-link", {"podName": "tcp-link"})
    (container,) = stack.wait_phase(NAMESPACE, "tcp-link")["status"]["containers"]
    assert container["reason"] == "RuntimeError", container
    assert not container.get("criuLogExcerpt")


# --- custody ----------------------------------------------------------------------------------


def test_custody_of_a_completed_capture_verifies(stack: LocalStack) -> None:
    create_pod(stack, "custody", "node-1", containers=("counter",))
    created = stack.create_checkpoint(
        NAMESPACE,
        "custody",
        # An alert reference from someone other than the receiver (this stack runs without the
        # chart's admission policy, which would refuse it): not recorded as alert provenance.
        {
            "podName": "custody",
            "reason": {"alert": {"source": "falco", "name": "Forged", "fingerprint": "f00d"}},
        },
        annotations={checkpoint_custody.REQUESTED_BY_ANNOTATION: "alice@example.com"},
    )
    obj = stack.wait_phase(NAMESPACE, "custody")
    assert obj["status"]["phase"] == "Completed", obj["status"]
    requested, captured = _chain(obj)
    assert (requested.actor.kind, requested.actor.name) == (ActorKind.USER, "alice@example.com")
    assert requested.reason == checkpoint_custody.FROM_ANNOTATION
    assert "spec.reason.alert ignored" in (requested.message or "")
    (container,) = obj["status"]["containers"]
    archive = container["archive"]
    assert captured.container == "counter" and captured.node == "node-1"
    assert (captured.sha256, captured.size_bytes) == (archive["sha256"], archive["sizeBytes"])
    assert captured.sha256 == DEFAULT_TRUTH["archive"]["sha256"]
    assert obj["metadata"]["uid"] == created["metadata"]["uid"]

    # The analyst's check: the archive file against the chain read back from the API server.
    args = ["verify", archive["path"], "--ref", "custody", "-n", NAMESPACE]
    assert main([*args, "--kubeconfig", str(stack.cluster.kubeconfig)]) == 0


# --- export: the agent's custody facts in the CR's chain --------------------------------------


@pytest.fixture
def exporting_agent(stack: LocalStack, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """node-2's agent restarted with an S3 export (moto's server on loopback), then restored."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = s3_client(endpoint, "operator-test", "operator-test-secret")
    bucket = "evidence-" + secrets.token_hex(4)
    s3.create_bucket(Bucket=bucket)
    values = export_values(tmp_path, endpoint, bucket, "operator-test", "operator-test-secret")
    stack.kill_agent("node-2")
    try:
        stack.start_agent("node-2", values_file=values)
        yield s3, bucket
    finally:
        stack.kill_agent("node-2")
        stack.start_agent("node-2")
        server.stop()


def test_an_exported_capture_has_the_agents_facts_in_its_verified_chain(
    stack: LocalStack, exporting_agent: tuple[Any, str]
) -> None:
    s3, bucket = exporting_agent
    create_pod(stack, "exported", "node-2", containers=("counter",))
    stack.create_checkpoint(NAMESPACE, "exported", {"podName": "exported"})

    def exported(obj: dict[str, Any]) -> bool:
        export = obj["status"]["containers"][0].get("export") or {}
        return export.get("phase") == "Exported" and len(obj["status"].get("custody", [])) >= 4

    # The CR completes first; the operator then follows the export to its end.
    obj = stack.wait_phase(NAMESPACE, "exported", ("Completed",), timeout=120, predicate=exported)
    (container,) = obj["status"]["containers"]
    export = container["export"]
    chain = _chain(obj)
    assert [e.action.value for e in chain] == ["Requested", "Captured", "Exported", "Verified"]
    _, captured, exported_entry, verified = chain
    assert captured.sha256 == container["archive"]["sha256"] == DEFAULT_TRUTH["archive"]["sha256"]
    assert exported_entry.url == verified.url == export["destination"]
    assert exported_entry.object_sha256 == export["sha256"]
    assert {e.container for e in chain[1:]} == {"counter"}
    assert {e.actor.name for e in chain[1:]} == {"agent/node-2"}

    # The object in the store is the archive the chain names.
    key = export["destination"].split("/", 3)[3]
    stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == export["sha256"] == captured.sha256
    assert any(e["reason"] == "Exported" for e in events(stack, "exported"))
    args = ["verify", container["archive"]["path"], "--ref", "exported", "-n", NAMESPACE]
    assert main([*args, "--kubeconfig", str(stack.cluster.kubeconfig)]) == 0


# --- legal hold -------------------------------------------------------------------------------


def _held_at_agent(stack: LocalStack, node: str, key: str) -> bool:
    import requests

    response = requests.get(
        f"{stack.agent_endpoint(node)}/v1/captures/{key}",
        headers={"Authorization": f"Bearer {stack.operator_token_for(node)}"},
        verify=str(stack.agent_ca.cert),
        timeout=5,
    )
    response.raise_for_status()
    return bool(response.json().get("held"))


def test_the_hold_reaches_the_agent_at_creation_and_when_it_changes(stack: LocalStack) -> None:
    from forensic_checkpoint.api.agent import capture_key
    from forensic_checkpoint.domain.evidence.deletion import HOLD_KEY
    from forensic_checkpoint_dev.cluster import processes

    create_pod(stack, "on-hold", "node-1", containers=("counter",))
    api = stack.cluster.admin_client()
    path = f"{GROUP_PATH}/namespaces/{NAMESPACE}/forensiccheckpoints/on-hold"
    try:
        apiserver.request(
            api,
            "POST",
            f"{GROUP_PATH}/namespaces/{NAMESPACE}/forensiccheckpoints",
            body={
                "apiVersion": "forensic-checkpoint.dev/v1alpha1",
                "kind": "ForensicCheckpoint",
                "metadata": {"name": "on-hold", "labels": {HOLD_KEY: "true"}},
                "spec": {"podName": "on-hold"},
            },
        )
        obj = stack.wait_phase(NAMESPACE, "on-hold")
        assert obj["status"]["phase"] == "Completed"
        key = capture_key(obj["metadata"]["uid"], "counter")
        assert _held_at_agent(stack, "node-1", key)  # CaptureRequest.hold

        def patch(section: str, value: str | None) -> None:
            apiserver.request(
                api,
                "PATCH",
                path,
                body={"metadata": {section: {HOLD_KEY: value}}},
            )

        patch("labels", None)
        assert processes.wait_until(lambda: not _held_at_agent(stack, "node-1", key), 30)
        patch("annotations", "true")
        assert processes.wait_until(lambda: _held_at_agent(stack, "node-1", key), 30)
    finally:
        close(api)
    reasons = [e["reason"] for e in events(stack, "on-hold")]
    assert "HoldLifted" in reasons and "HoldSet" in reasons


# --- retention: a Deleted fact after the CR completed -------------------------------------


def test_a_retention_deletion_is_appended_to_the_finished_checkpoints_chain(
    stack: LocalStack, tmp_path: Path
) -> None:
    values = tmp_path / "agent-values.yaml"
    values.write_text(
        json.dumps({"retention": {"protectUnexported": False, "container": {"maxCount": 1}}})
    )
    stack.kill_agent("node-2")
    try:
        stack.start_agent("node-2", values_file=values)
        create_pod(stack, "retained", "node-2", containers=("app",))
        stack.create_checkpoint(NAMESPACE, "retained-1", {"podName": "retained"})
        first = stack.wait_phase(NAMESPACE, "retained-1")
        assert first["status"]["phase"] == "Completed"
        # A second capture of the same container: maxCount 1 deletes the first archive.
        stack.create_checkpoint(NAMESPACE, "retained-2", {"podName": "retained"})
        assert stack.wait_phase(NAMESPACE, "retained-2")["status"]["phase"] == "Completed"

        def deleted(obj: dict[str, Any]) -> bool:
            return bool(obj["status"]["containers"][0].get("archiveDeleted"))

        obj = stack.wait_phase(NAMESPACE, "retained-1", ("Completed",), predicate=deleted)
    finally:
        stack.kill_agent("node-2")
        stack.start_agent("node-2")
    chain = _chain(obj)
    assert [e.action.value for e in chain] == ["Requested", "Captured", "Deleted"]
    assert chain[2].reason == "RetentionMaxCount"
    assert chain[2].sha256 == chain[1].sha256
    assert not Path(obj["status"]["containers"][0]["archive"]["path"]).exists()
    assert obj["status"]["phase"] == "Completed"  # the capture's outcome is unchanged
