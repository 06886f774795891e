"""`kubectl forensic` on a dev cluster with the operator and an agent running (as local
processes, forensic_checkpoint_dev.stack): an investigator who holds only the namespace's
"edit" role (with the chart's aggregated roles) captures, waits with progress, reads the
report, and downloads the archive with its sha256 checked; a changed archive on the node is
refused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from forensic_checkpoint.agent_identity import agent_audience
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.agent_tunnel import AgentPod, open_tunnel
from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
from forensic_checkpoint.k8s.client import close, from_token
from forensic_checkpoint_dev.cluster import access, binaries
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.stack import (
    ARCHIVE_READER_SA,
    SYSTEM_NAMESPACE,
    LocalStack,
)

from .chart import kubectl, run, template

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAMESPACE = "shop"
DATA = Path(__file__).resolve().parents[1] / "data"
#: The CRI-O blog recording, named on the counter pods (the fake kubelets' default is the
#: containerd sample): e2e/assert-blog.sh searches its secret, RANDOM_4105_KEY.
BLOG_ARCHIVE = str(DATA / "counter-blog-crio.tar.zst")
TRUTH = json.loads((DATA / "counter-blog-crio.truth.json").read_text())
SECRET = TRUTH["memory_strings"][0]["value"]
PLUGIN = Path(sys.executable).parent / "kubectl-forensic"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if binaries.missing() and not binaries.go_available():
        pytest.skip("cluster tools are not built and no Go toolchain is installed")
    root = tmp_path_factory.mktemp("plugin")
    cluster = DevCluster.start(root / "cluster", nodes=1, die_with_parent=True)
    local: LocalStack | None = None
    try:
        api = cluster.admin_client()
        access.ensure_namespace(api, NAMESPACE)
        close(api)
        local = LocalStack.prepare(cluster, root / "stack")
        # The agent logs everything (DEBUG) to a file: test_agent_logs_... reads it for secrets.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("FORENSIC_LOG_LEVEL", "DEBUG")
            env.delenv("FORENSIC_LOG_FORMAT", raising=False)
            local.start_agent("node-1")
        local.start_operator([NAMESPACE])
        yield local
    finally:
        if local is not None:
            local.stop()
        cluster.stop()


@pytest.fixture(scope="module")
def investigator(stack: LocalStack) -> Path:
    """A kubeconfig for a user with the built-in "edit" role in the namespace only; the chart's
    aggregated roles are what let "edit" create ForensicCheckpoints."""
    c = stack.cluster
    aggregated = template(
        set_values=["crds.install=false"], show_only="templates/rbac-aggregated.yaml"
    )
    run(kubectl(), "apply", "-f", "-", kubeconfig=c.kubeconfig, stdin=aggregated)
    run(kubectl(), "create", "rolebinding", "investigator", "--clusterrole=edit",
        "--user=investigator", "-n", NAMESPACE, kubeconfig=c.kubeconfig)  # fmt: skip
    pair = c.issue_client_certificate("investigator")
    path = stack.root / "investigator.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "dev",
                        "cluster": {"server": c.server, "certificate-authority": str(c.ca_file)},
                    }
                ],
                "users": [
                    {
                        "name": "investigator",
                        "user": {"client-certificate": str(pair.cert), "client-key": str(pair.key)},
                    }
                ],
                "contexts": [
                    {
                        "name": "dev",
                        "context": {
                            "cluster": "dev",
                            "user": "investigator",
                            "namespace": NAMESPACE,
                        },
                    }
                ],
                "current-context": "dev",
            }
        )
    )
    return path


def plugin(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run(
        [str(PLUGIN), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )


def captured_name(stdout: str) -> str:
    first = stdout.splitlines()[0]
    assert first.endswith(" created"), stdout
    return first.split("/", 1)[1].split()[0]


def test_capture_wait_report_and_get_archive(
    stack: LocalStack, investigator: Path, tmp_path: Path
) -> None:
    stack.cluster.create_running_pod(
        NAMESPACE, "counter", "node-1", containers=("counter",), archive=BLOG_ARCHIVE
    )
    # The namespace comes from the investigator's kubeconfig context (no -n).
    done = plugin(investigator, "capture", "counter", "--search", SECRET, "--wait")
    assert done.returncode == 0, done.stderr
    name = captured_name(done.stdout)
    assert name.startswith("counter-")
    frozen = f"{TRUTH['criu_stats_dump']['dump']['frozen_time'] / 1000:.1f}ms"
    assert f"{name}: Completed" in done.stdout and f"frozen {frozen})" in done.stdout
    progress = done.stderr.splitlines()
    # Progress before the end; which phases a 1 s poll sees depends on the machine (with no
    # poll interval left on the capture path, the blog capture often goes Pending -> Completed).
    assert len(progress) >= 2 and not progress[0].startswith(f"{name}: Completed"), done.stderr
    assert progress[-1].startswith(f"{name}: Completed")

    report = plugin(investigator, "report", name)
    assert report.returncode == 0, report.stderr
    assert f"ForensicCheckpoint {NAMESPACE}/{name}: Completed" in report.stdout
    assert f"memory matches: {TRUTH['memory_strings'][0]['occurrences']}" in report.stdout
    assert TRUTH["archive"]["sha256"] in report.stdout
    assert f"frozen:  {frozen} (the workload was paused)" in report.stdout
    as_json = json.loads(plugin(investigator, "report", name, "-o", "json").stdout)
    assert as_json["phase"] == "Completed"

    # Downloading needs the archive-reader Role: the plugin asks for that ServiceAccount's
    # token for the node's agent; the investigator's own credentials never go to the agent.
    refused = plugin(
        investigator, "get-archive", name, "-O", str(tmp_path / "x.tar"),
        "--agent-ca-file", str(stack.agent_ca.cert), "--direct",
    )  # fmt: skip
    assert refused.returncode == 1
    assert "cannot get a token of the archive reader" in refused.stderr
    run(kubectl(), "create", "rolebinding", "investigator-reads", "-n", SYSTEM_NAMESPACE,
        f"--role={ARCHIVE_READER_SA}", "--user=investigator",
        kubeconfig=stack.cluster.kubeconfig)  # fmt: skip
    # By default through the API server: the dev stack's agent is a host process, not a pod.
    no_pod = plugin(
        investigator, "get-archive", name, "-O", str(tmp_path / "x.tar"),
        "--agent-ca-file", str(stack.agent_ca.cert),
    )  # fmt: skip
    assert no_pod.returncode == 1
    assert f"no running agent pod on node node-1 in namespace {SYSTEM_NAMESPACE}" in no_pod.stderr
    out = tmp_path / "counter.tar"
    got = plugin(
        investigator, "get-archive", name, "-O", str(out),
        "--agent-ca-file", str(stack.agent_ca.cert), "--direct",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == TRUTH["archive"]["sha256"]
    assert out.stat().st_mode & 0o777 == 0o600
    assert "(verified)" in got.stdout

    api = stack.cluster.admin_client()
    try:
        status = ForensicCheckpoints(api).read(NAMESPACE, name).status
        assert status is not None and status.containers[0].archive is not None
        # The reader's token downloads, and does nothing else at the agent.
        reader = access.request_token(
            api, SYSTEM_NAMESPACE, ARCHIVE_READER_SA, audiences=[agent_audience("node-1")]
        )
    finally:
        close(api)
    key = status.containers[0].capture_key
    for method, path in (("DELETE", key), ("GET", key), ("PUT", f"{key}/hold")):
        answer = requests.request(
            method,
            f"{status.agent_endpoint}/v1/captures/{path}",
            headers={"Authorization": f"Bearer {reader}"},
            json={"hold": False},
            verify=str(stack.agent_ca.cert),
            timeout=10,
        )
        assert answer.status_code == 403, (method, path, answer.text)
        assert "may only download" in answer.json()["message"]

    # Someone changes the archive on the node: the download is refused and nothing is left.
    on_node = Path(status.containers[0].archive.path)
    with on_node.open("r+b") as f:
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    tampered = tmp_path / "tampered.tar"
    bad = plugin(
        investigator, "get-archive", name, "-O", str(tampered),
        "--agent-ca-file", str(stack.agent_ca.cert), "--direct",
    )  # fmt: skip
    assert bad.returncode == 1
    assert "sha256 mismatch" in bad.stderr
    assert not tampered.exists()
    assert not tampered.with_name("tampered.tar.part").exists()


def test_the_archive_reader_role_lets_a_port_forward_through(stack: LocalStack) -> None:
    """The API server authorises the websocket before it reaches a kubelet (so a missing pod
    tells): without the Role a 403 with the API server's reason, not a websocket library's
    traceback; with it (deploy/rbac, the chart's Role) the request gets past authorisation,
    which needs both get and create on pods/portforward."""
    admin = stack.cluster.admin_client()
    try:
        access.create_service_account(admin, NAMESPACE, "pf-probe")
        token = access.request_token(admin, NAMESPACE, "pf-probe")
    finally:
        close(admin)
    user = from_token(stack.cluster.server, token, ca_file=stack.cluster.ca_file)
    target = AgentPod(SYSTEM_NAMESPACE, "forensic-checkpoint-agent-x", 8443)
    try:
        with pytest.raises(ClusterError) as refused:
            open_tunnel(user, target)
        assert refused.value.status_code == 403
        assert (
            f"port-forward to pod {SYSTEM_NAMESPACE}/forensic-checkpoint-agent-x:8443: "
            "Handshake status 403 Forbidden: " in refused.value.message
        )
        assert 'cannot get resource "pods/portforward"' in refused.value.message
        run(kubectl(), "create", "rolebinding", "pf-probe", "-n", SYSTEM_NAMESPACE,
            f"--role={ARCHIVE_READER_SA}", f"--serviceaccount={NAMESPACE}:pf-probe",
            kubeconfig=stack.cluster.kubeconfig)  # fmt: skip
        deadline = time.monotonic() + 30
        while True:  # RBAC reaches the authorizer's cache within a second or two
            with pytest.raises(ClusterError) as past:
                open_tunnel(user, target)
            if past.value.status_code != 403 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert past.value.status_code == 404, past.value.message
        assert 'pods "forensic-checkpoint-agent-x" not found' in past.value.message
    finally:
        close(user)


def test_capture_of_a_missing_pod_fails_with_the_reason(
    stack: LocalStack, investigator: Path
) -> None:
    failed = plugin(
        investigator, "capture", "no-such-pod", "-n", NAMESPACE, "--wait", "--wait-timeout", "60"
    )
    assert failed.returncode == 1
    name = captured_name(failed.stdout)
    assert f"{name}: Failed" in failed.stdout


def test_investigator_cannot_capture_elsewhere(stack: LocalStack, investigator: Path) -> None:
    denied = plugin(investigator, "capture", "counter", "-n", "default")
    assert denied.returncode == 1
    assert "forbidden" in denied.stderr.lower()


def test_documented_metrics_are_exported(stack: LocalStack, investigator: Path) -> None:
    """docs/metrics.md lists only what the running operator and agent really export (the
    alert receiver's metrics are checked by tests/alerts)."""
    import re

    import requests

    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    always = doc.split("With the alert receiver")[0]
    documented = set(re.findall(r"^\| `(forensic_[a-z_]+)`", always, flags=re.MULTILINE))
    assert len(documented) >= 12
    endpoint = stack.agent_endpoint("node-1")
    agent = requests.get(f"{endpoint}/metrics", verify=str(stack.agent_ca.cert), timeout=10).text
    operator = requests.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10).text
    exported = set(re.findall(r"^# TYPE (\S+) ", agent + operator, flags=re.MULTILINE))
    # prometheus_client names a counter's family without the _total suffix.
    exported |= {f"{name}_total" for name in exported}
    assert documented <= exported, sorted(documented - exported)


def test_e2e_blog_steps_on_the_dev_cluster(stack: LocalStack) -> None:
    """e2e/kind.sh's capture and assertions, unchanged: e2e/forensiccheckpoint.yaml applied with
    kubectl, then e2e/assert-blog.sh. Here the counter pod is a fake one whose kubelet returns
    the recorded CRI-O blog archive; on kind it is the real workload."""
    repo = Path(__file__).resolve().parents[2]
    c = stack.cluster
    c.create_running_pod(
        NAMESPACE, "counters", "node-1", containers=("counter",), archive=BLOG_ARCHIVE
    )
    run(kubectl(), "apply", "-n", NAMESPACE, "-f", str(repo / "e2e" / "forensiccheckpoint.yaml"),
        kubeconfig=c.kubeconfig)  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(c.kubeconfig), "KUBECTL": str(kubectl())}
    checked = subprocess.run(
        ["bash", str(repo / "e2e" / "assert-blog.sh"), NAMESPACE],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=360,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "assert-blog: ok: 2 hit(s) for RANDOM_4105_KEY" in checked.stdout


def test_agent_logs_are_json_lines_without_secrets(stack: LocalStack, investigator: Path) -> None:
    """The agent's stderr (a file, as in a pod) after a capture at DEBUG level: every line is a
    JSON object with time, level, logger and message, and no line holds a bearer token (the
    operator's, which the agent reviews on every call, or its own) or a private key."""
    stack.cluster.create_running_pod(NAMESPACE, "logged", "node-1", containers=("counter",))
    done = plugin(investigator, "capture", "logged", "--wait")
    assert done.returncode == 0, done.stderr
    text = (stack.root / "logs" / "agent-node-1.log").read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["level"] == "DEBUG" for e in entries), "the agent did not log at DEBUG"
    assert any("/checkpoint/shop/logged/counter" in json.dumps(e) for e in entries), (
        "the capture left no trace in the log"
    )
    secrets = {
        "operator token": stack.operator.token_file.read_text().strip(),
        "agent token": stack.agent.token_file.read_text().strip(),
    }
    for what, secret in secrets.items():
        assert len(secret) > 20 and secret not in text, f"{what} logged"
    assert "PRIVATE KEY" not in text
