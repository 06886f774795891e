"""End to end on a real API server: ForensicCheckpoint -> operator -> agent (real TLS, token
auth, RBAC of deploy/rbac) -> fake kubelet -> real archive -> analysis -> status."""

from __future__ import annotations

import json
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.operator.operator_e2e_support import (
    NAMESPACE,
    NODES,
    condition,
    create_pod,
    events,
    fake_node,
    kubelet_calls,
)

from forensic_checkpoint.api.agent import capture_key
from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import binaries, pki, processes
from forensic_checkpoint_dev.stack import LocalStack

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


DATA = Path(__file__).resolve().parents[1] / "data"
#: The CRI-O blog recording, named on the pod (the fake kubelets' default is containerd's).
BLOG_ARCHIVE = DATA / "counter-blog-crio.tar.zst"
BLOG_TRUTH = json.loads((DATA / "counter-blog-crio.truth.json").read_text())
SECRET = BLOG_TRUTH["memory_strings"][0]


def test_blog_scenario_completes_with_the_secret_found(stack: LocalStack) -> None:
    # The docs' examples (test_doc_commands.py) capture a pod of this name on this cluster too.
    calls_before = len(kubelet_calls(stack, "node-1", "counters"))
    create_pod(stack, "counters", "node-1", containers=("counter",), archive=str(BLOG_ARCHIVE))
    stack.create_checkpoint(
        NAMESPACE, "blog", {"podName": "counters", "analysis": {"searches": [SECRET["value"]]}}
    )
    obj = stack.wait_phase(NAMESPACE, "blog")
    status = obj["status"]
    assert status["phase"] == "Completed", status
    assert status["nodeName"] == "node-1"
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "Ready")["observedGeneration"] == obj["metadata"]["generation"]
    [container] = status["containers"]
    summary = container["summary"]
    assert {h["pid"] for h in summary["memoryHits"]} == set(SECRET["found_in_pids"])
    assert summary["memoryHitCount"] == SECRET["occurrences"]
    assert {h["address"] for h in summary["memoryHits"]} == {
        o["vaddr"] for o in SECRET["occurrence_list"]
    }
    assert [p["pid"] for p in summary["processes"]] == sorted(
        p["pid"] for p in BLOG_TRUTH["processes"]
    )
    assert summary["listening"][0]["local"].endswith(":8088")
    archive = container["archive"]
    assert Path(archive["path"]).is_file()
    assert archive["sizeBytes"] == BLOG_TRUTH["archive"]["size_bytes"]
    assert archive["sha256"] == BLOG_TRUTH["archive"]["sha256"]
    assert container["reportUrl"].startswith("https://127.0.0.1:")
    assert status["containerNames"] == "counter" and status["totalSize"].endswith("MiB")
    assert len(kubelet_calls(stack, "node-1", "counters")) == calls_before + 1

    # What users run: kubectl wait on the Ready condition, and the Events of the object.
    kubectl = binaries.locate("kubectl")
    waited = subprocess.run(
        [str(kubectl), "--kubeconfig", str(stack.cluster.kubeconfig), "-n", NAMESPACE,
         "wait", "--for=condition=Ready", "fcp/blog", "--timeout=30s"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert waited.returncode == 0, waited.stderr
    # How long the workload was frozen for the dump (CRIU's frozen_time: 149.6 ms here).
    frozen = BLOG_TRUTH["criu_stats_dump"]["dump"]["frozen_time"] / 1000
    assert container["frozenTime"] == status["frozenTime"] == f"{frozen:.1f}ms"
    wide = subprocess.run(
        [str(kubectl), "--kubeconfig", str(stack.cluster.kubeconfig), "-n", NAMESPACE,
         "get", "fcp/blog", "-o", "wide"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    start = wide[0].index("FROZEN")  # columns are aligned; SIZE holds a space ("9.3 MiB")
    assert wide[1][start:].split()[0] == status["frozenTime"]
    reasons = {e["reason"] for e in events(stack, "blog")}
    assert {"Resolved", "CaptureRequested", "Captured", "Completed"} <= reasons, reasons
    # The blog sample's only finding is an info one (/etc/mtab written): not suspicious.
    suspicious = condition(obj, "Suspicious")
    assert (suspicious["status"], suspicious["reason"]) == ("False", "NoHighSeverityFindings")
    assert "Suspicious" not in reasons
    metrics = requests.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).text
    assert 'forensic_checkpoint_operator_checkpoints_total{phase="Completed"' in metrics


def test_an_attacked_container_is_flagged_suspicious_once(stack: LocalStack) -> None:
    # containerd sample of a reverse shell, a memfd payload, cron and ssh persistence.
    create_pod(stack, "victim", "node-2", archive=str(DATA / "attack-revshell.tar.zst"))
    stack.create_checkpoint(NAMESPACE, "attack", {"podName": "victim"})
    obj = stack.wait_phase(NAMESPACE, "attack")
    assert obj["status"]["phase"] == "Completed", obj["status"]
    suspicious = condition(obj, "Suspicious")
    assert suspicious["status"] == "True"
    assert suspicious["reason"] == "HighSeverityFindings"
    assert suspicious["message"].startswith("2 critical, 8 high finding(s): ")
    [container] = obj["status"]["containers"]
    summary = container["summary"]
    assert summary["findings"]["critical"] == 2 and summary["findings"]["high"] == 8
    assert {"memfd-exec", "reverse-shell"} <= set(suspicious["message"].split(": ")[1].split(", "))
    ids = {f["id"] for f in summary["topFindings"]}
    assert "reverse-shell:pid=14" in ids, ids
    # Later reconciles (the archive is polled for custody facts every 2 s) post no second one.
    time.sleep(5)
    warnings = [e for e in events(stack, "attack") if e["reason"] == "Suspicious"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["type"] == "Warning"
    assert warnings[0]["message"] == suspicious["message"]


def test_the_operator_logs_one_json_object_per_line(stack: LocalStack) -> None:
    create_pod(stack, "logged", "node-3")
    stack.create_checkpoint(NAMESPACE, "logged", {"podName": "logged"})
    assert stack.wait_phase(NAMESPACE, "logged")["status"]["phase"] == "Completed"
    log = stack.root / "logs" / "operator.log"

    def logged_completion() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        lines = log.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        # A checkpoint's transitions are logged by kopf's per-object logger: with the object.
        completed = [
            e
            for e in entries
            if e["message"].startswith("Completed: ")
            and e.get("object", {}).get("name") == "logged"
        ]
        return entries, completed

    # The line follows the status write by a moment: poll the file briefly.
    deadline = time.monotonic() + 10
    entries, completed = logged_completion()
    while not completed and time.monotonic() < deadline:
        time.sleep(0.2)
        entries, completed = logged_completion()
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    assert completed, [e["message"] for e in entries]
    assert completed[0]["object"]["namespace"] == NAMESPACE
    assert completed[0]["object"]["kind"] == "ForensicCheckpoint"
    assert completed[0]["level"] == "INFO" and completed[0]["logger"] == "kopf.objects"


def test_multi_container_pod(stack: LocalStack) -> None:
    create_pod(stack, "multi", "node-2", containers=("app", "sidecar", "logger"))
    stack.create_checkpoint(
        NAMESPACE, "multi", {"podName": "multi", "containers": ["app", "sidecar"]}
    )
    obj = stack.wait_phase(NAMESPACE, "multi")
    status = obj["status"]
    assert status["phase"] == "Completed", status
    assert [c["name"] for c in status["containers"]] == ["app", "sidecar"]
    assert all(
        c["phase"] == "Completed" and c["summary"]["processCount"] > 0 for c in status["containers"]
    )
    assert len({c["archive"]["path"] for c in status["containers"]}) == 2
    paths = sorted(c["path"] for c in kubelet_calls(stack, "node-2", "multi"))
    assert paths == [f"/checkpoint/{NAMESPACE}/multi/app", f"/checkpoint/{NAMESPACE}/multi/sidecar"]

    # Empty containers means every container of the pod.
    stack.create_checkpoint(NAMESPACE, "multi-all", {"podName": "multi"})
    obj = stack.wait_phase(NAMESPACE, "multi-all")
    assert obj["status"]["phase"] == "Completed"
    assert obj["status"]["containerNames"] == "app,sidecar,logger"


@pytest.mark.parametrize(
    ("fault", "timeout", "reason", "status_code"),
    [
        ("gate-off", 30, "CheckpointingDisabled", 404),
        ("error=criu failed: type NOTIFY errno 0", 30, None, 500),
        ("hang", 2, "Timeout", None),
        ("reset", 30, "KubeletUnreachable", None),
    ],
)
def test_kubelet_failure_modes_give_their_reason(
    stack: LocalStack, fault: str, timeout: int, reason: str | None, status_code: int | None
) -> None:
    name = "fault-" + fault.split("=", maxsplit=1)[0].split(":", maxsplit=1)[0]
    create_pod(stack, name, "node-3", containers=("app",), fault=fault)
    node = fake_node(stack, "node-3")
    # The kubelet gives a hung dump max(timeoutSeconds, runtimeRequestTimeout): 3 s, not 2 min.
    node.set_config(runtimeRequestTimeout=3)
    try:
        stack.create_checkpoint(NAMESPACE, name, {"podName": name, "timeoutSeconds": timeout})
        obj = stack.wait_phase(NAMESPACE, name)
    finally:
        node.set_config(runtimeRequestTimeout=120)
    status = obj["status"]
    assert status["phase"] == "Failed", status
    [container] = status["containers"]
    if reason is None:  # a 500: RuntimeError or a refinement of it by the failure classifier
        assert container["reason"] not in ("CheckpointingDisabled", "Timeout", "Completed")
        assert "NOTIFY" in container["message"] or container["remediation"]
    else:
        assert container["reason"] == reason
    if status_code is not None:
        assert container["kubeletStatusCode"] == status_code
    assert status["reason"] == container["reason"]
    assert condition(obj, "Ready")["reason"] == container["reason"]


def test_kubelet_forbidden_names_the_missing_permission(stack: LocalStack) -> None:
    """The agent's ClusterRole without `create nodes/checkpoint` (a mis-installed RBAC): the
    agent keeps its heartbeat and readiness rights, the kubelet answers 403."""
    api = stack.cluster.admin_client()
    role = "/apis/rbac.authorization.k8s.io/v1/clusterroles/forensic-checkpoint-agent"
    saved = apiserver.request(api, "GET", role)
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        saved["metadata"].pop(key, None)
    crippled = {
        **saved,
        "rules": [r for r in saved["rules"] if "nodes/checkpoint" not in r["resources"]],
    }
    apiserver.request(api, "PUT", role, body=crippled)
    try:
        create_pod(stack, "forbidden", "node-3", containers=("app",))
        stack.create_checkpoint(NAMESPACE, "forbidden", {"podName": "forbidden"})
        obj = stack.wait_phase(NAMESPACE, "forbidden")
    finally:
        apiserver.request(api, "PUT", role, body=saved)
        close(api)
        # The grant was gone on every node, so any agent's readiness probe may have seen the
        # 403 (the operator then fails a capture there at once): the next tests capture on
        # every node, so wait until each node's readiness recovered, not only node-3's.
        for node in NODES:
            assert processes.wait_until(partial(_ready, stack, node), 60), stack.readiness(node)
    [container] = obj["status"]["containers"]
    assert container["reason"] == "KubeletForbidden"
    assert "nodes/checkpoint" in container["message"]


@pytest.mark.parametrize(
    ("pod_kwargs", "spec", "reason"),
    [
        (None, {"podName": "no-such-pod"}, "PodNotFound"),
        ({"containers": ("app",)}, {"containers": ["nope"]}, "ContainerNotFound"),
        ({"containers": ("app",), "running": False}, {}, "PodNotRunning"),
    ],
)
def test_pod_problems_fail_before_any_kubelet_call(
    stack: LocalStack, pod_kwargs: dict[str, Any] | None, spec: dict[str, Any], reason: str
) -> None:
    name = f"reject-{reason.lower()}"
    if pod_kwargs is not None:
        create_pod(stack, name, "node-2", **pod_kwargs)
    stack.create_checkpoint(NAMESPACE, name, {"podName": name, **spec})
    obj = stack.wait_phase(NAMESPACE, name)
    assert obj["status"]["phase"] == "Failed"
    assert obj["status"]["reason"] == reason
    assert kubelet_calls(stack, "node-2", name) == []


def _ready(stack: LocalStack, node: str) -> bool:
    return stack.readiness(node).get("status") == "True"


def _wait_requested(stack: LocalStack, name: str) -> None:
    def requested(obj: dict[str, Any]) -> bool:
        return any(c.get("requestedAt") for c in obj["status"].get("containers", []))

    stack.wait_phase(NAMESPACE, name, ("Capturing",), timeout=30, predicate=requested)


def test_operator_killed_mid_capture_resumes_without_a_second_checkpoint(stack: LocalStack) -> None:
    create_pod(stack, "slow-op", "node-1", containers=("app",), fault="latency=4s")
    stack.create_checkpoint(NAMESPACE, "slow-op", {"podName": "slow-op"})
    _wait_requested(stack, "slow-op")
    stack.kill_operator()
    time.sleep(1)
    stack.start_operator([NAMESPACE])
    obj = stack.wait_phase(NAMESPACE, "slow-op")
    assert obj["status"]["phase"] == "Completed", obj["status"]
    assert len(kubelet_calls(stack, "node-1", "slow-op")) == 1


def _agent_state(stack: LocalStack, node: str, key: str) -> str:
    response = requests.get(
        f"{stack.agent_endpoint(node)}/v1/captures/{key}",
        headers={"Authorization": f"Bearer {stack.operator_token_for(node)}"},
        verify=str(stack.agent_ca.cert),
        timeout=5,
    )
    return str(response.json().get("state"))


@pytest.mark.parametrize(
    ("fault", "phase", "reason"),
    [
        # SIGKILL closes the agent's connection and the kubelet cancels the dump: no archive.
        ("latency=6s", "Failed", "CaptureInterrupted"),
        # The rare late file: the runtime had written the archive already; it is adopted.
        ("latency=6s;late-file", "Completed", "Completed"),
    ],
)
def test_agent_killed_mid_capture_never_checkpoints_twice(
    stack: LocalStack, fault: str, phase: str, reason: str
) -> None:
    name = f"killed-{phase.lower()}"
    create_pod(stack, name, "node-2", containers=("app",), fault=fault)
    created = stack.create_checkpoint(NAMESPACE, name, {"podName": name})
    _wait_requested(stack, name)
    key = capture_key(created["metadata"]["uid"], "app")
    assert processes.wait_until(
        lambda: _agent_state(stack, "node-2", key) == "Capturing", 20, interval=0.1
    )
    # "Capturing" is stored just before the kubelet request goes out; give the request time to
    # reach the kubelet, so the agent dies with the call in flight.
    time.sleep(2)
    stack.kill_agent("node-2")
    time.sleep(1)
    restarted = time.monotonic()
    stack.start_agent("node-2")
    obj = stack.wait_phase(NAMESPACE, name, timeout=180)
    status = obj["status"]
    assert (status["phase"], status["reason"]) == (phase, reason), status
    [call] = kubelet_calls(stack, "node-2", name)
    assert call.get("canceled") is True  # the kubelet saw the agent die
    if phase == "Failed":
        # Decided within seconds of the restart, not after the 120 s timeout plus margin.
        assert time.monotonic() - restarted < 60
        [container] = status["containers"]
        assert "cancels the checkpoint when the calling agent dies" in container["message"]
        assert "Re-create the ForensicCheckpoint" in container["remediation"]
        assert container.get("archive") is None


def test_deleting_the_checkpoint_removes_the_archive_unless_held(stack: LocalStack) -> None:
    create_pod(stack, "cleanup", "node-3", containers=("app",))
    stack.create_checkpoint(NAMESPACE, "cleanup", {"podName": "cleanup"})
    obj = stack.wait_phase(NAMESPACE, "cleanup")
    archive = Path(obj["status"]["containers"][0]["archive"]["path"])
    assert archive.is_file()
    stack.delete_checkpoint(NAMESPACE, "cleanup")
    assert processes.wait_until(lambda: stack.get_checkpoint(NAMESPACE, "cleanup") is None, 60)
    assert not archive.exists()

    create_pod(stack, "held", "node-3", containers=("app",))
    stack.create_checkpoint(NAMESPACE, "held", {"podName": "held"})
    obj = stack.wait_phase(NAMESPACE, "held")
    held = Path(obj["status"]["containers"][0]["archive"]["path"])
    api = stack.cluster.admin_client()
    try:
        apiserver.request(
            api,
            "PATCH",
            f"/apis/forensic-checkpoint.dev/v1alpha1/namespaces/{NAMESPACE}/forensiccheckpoints/held",
            body={"metadata": {"labels": {"forensic-checkpoint.dev/hold": "true"}}},
        )
    finally:
        close(api)
    stack.delete_checkpoint(NAMESPACE, "held")
    assert processes.wait_until(lambda: stack.get_checkpoint(NAMESPACE, "held") is None, 60)
    assert held.is_file()


def test_deleting_the_checkpoint_mid_capture_deletes_the_late_archive_on_landing(
    stack: LocalStack,
) -> None:
    """issue 15 item 8: the CR is deleted while the kubelet call runs; the archive the runtime
    writes seconds later (late-file) is hashed and deleted when it lands, not left on the node
    or found by the 120 s sweep, and the agent's job record stays with a Deleted fact."""
    latency = 6.0
    create_pod(stack, "gone", "node-3", containers=("app",), fault=f"latency={latency}s;late-file")
    created = stack.create_checkpoint(NAMESPACE, "gone", {"podName": "gone"})
    _wait_requested(stack, "gone")
    key = capture_key(created["metadata"]["uid"], "app")
    assert processes.wait_until(
        lambda: _agent_state(stack, "node-3", key) == "Capturing", 20, interval=0.1
    )
    called = time.monotonic()
    stack.delete_checkpoint(NAMESPACE, "gone")
    assert processes.wait_until(lambda: stack.get_checkpoint(NAMESPACE, "gone") is None, 30)
    assert time.monotonic() - called < latency  # the operator did not wait for the dump
    assert processes.wait_until(lambda: _agent_state(stack, "node-3", key) == "Failed", 30)
    assert time.monotonic() - called < latency + 5  # deleted within seconds of landing
    job = requests.get(
        f"{stack.agent_endpoint('node-3')}/v1/captures/{key}",
        headers={"Authorization": f"Bearer {stack.operator_token_for('node-3')}"},
        verify=str(stack.agent_ca.cert),
        timeout=5,
    ).json()
    assert job["reason"] == "DeletedWhileCapturing"
    [fact] = [f for f in job["custodyEvents"] if f["action"] == "Deleted"]
    assert fact["reason"] == "DeletedWhileCapturing" and len(fact["sha256"]) == 64
    node = fake_node(stack, "node-3")
    assert list(node.checkpoint_dir.resolve().glob("checkpoint-gone_*")) == []
    [call] = kubelet_calls(stack, "node-3", "gone")
    assert call.get("canceled") is not True  # the archive came with the kubelet's answer


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [("wrong-kubelet-ca", "KubeletTLSError"), ("bad-kubelet-token", "KubeletUnauthorized")],
)
def test_agent_credential_failures_at_the_kubelet(
    stack: LocalStack, tmp_path: Path, breakage: str, reason: str
) -> None:
    if breakage == "wrong-kubelet-ca":
        other = pki.create_ca(pki.CertPair(tmp_path / "o.crt", tmp_path / "o.key"), "other")
        overrides: dict[str, Any] = {"kubelet_ca": other.cert}
    else:
        token = tmp_path / "bad.token"
        token.write_text("not-a-token-the-api-server-issued")
        overrides = {"kubelet_token_file": token}
    stack.kill_agent("node-3")
    try:
        stack.start_agent("node-3", **overrides)
        name = f"cred-{breakage}"
        create_pod(stack, name, "node-3", containers=("app",))
        stack.create_checkpoint(NAMESPACE, name, {"podName": name})
        obj = stack.wait_phase(NAMESPACE, name)
    finally:
        stack.kill_agent("node-3")
        stack.start_agent("node-3")
    [container] = obj["status"]["containers"]
    assert obj["status"]["phase"] == "Failed"
    assert container["reason"] == reason, container
    # The agent's readiness round found it first: the operator never asked for the capture.
    assert container.get("requestedAt") is None
    assert kubelet_calls(stack, "node-3", name) == []


def test_a_node_without_agent_fails_with_agent_unavailable(stack: LocalStack) -> None:
    stack.kill_agent("node-3")
    api = stack.cluster.admin_client()
    try:
        apiserver.request(
            api, "DELETE", "/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes/node-3"
        )
        create_pod(stack, "orphan", "node-3", containers=("app",))
        stack.create_checkpoint(NAMESPACE, "orphan", {"podName": "orphan"})
        waiting = stack.wait_phase(
            NAMESPACE,
            "orphan",
            ("Pending",),
            timeout=30,
            predicate=lambda o: o["status"].get("reason") == "AgentUnavailable",
        )
        assert "no ForensicNode node-3" in waiting["status"]["message"]
        # The stack's operator waits 20 s (--agent-wait) for an agent before failing.
        obj = stack.wait_phase(NAMESPACE, "orphan", timeout=60)
    finally:
        close(api)
        stack.start_agent("node-3")
    assert obj["status"]["phase"] == "Failed"
    assert obj["status"]["reason"] == "AgentUnavailable"
    assert kubelet_calls(stack, "node-3", "orphan") == []
