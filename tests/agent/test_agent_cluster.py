"""The agent against the dev cluster: a real API server (TokenReview, RBAC, CRDs), fake
kubelets that answer like kubelet's server.go over mutual TLS, and the real containerd sample
they return by default.

The agent runs with exactly the ClusterRole that ``deploy/rbac/agent.yaml`` ships, under its own
ServiceAccount token, so the permissions are proven sufficient. Its kubelet identity is a client
certificate signed by the cluster CA and bound to ``create nodes/checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
import yaml
from tests.agent.agent_support import sha256
from tests.factories import export_values, s3_client

from forensic_checkpoint.agent.identity import keys
from forensic_checkpoint.agent.kubelet.client import KubeletAuth, KubeletClient
from forensic_checkpoint.agent.process import AgentConfig, AgentProcess
from forensic_checkpoint.agent_identity import agent_audience
from forensic_checkpoint.api.agent import (
    CaptureRequest,
    CaptureStatus,
    DeleteResult,
    capture_key,
)
from forensic_checkpoint.api.forensicnode import AgentStatus
from forensic_checkpoint.errors import KubeletError
from forensic_checkpoint.k8s.nodes import ForensicNodes
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access, binaries

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
AGENT_RBAC = REPO / "deploy" / "rbac" / "agent.yaml"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
#: What the fake kubelets return by default (control_plane.DEFAULT_ARCHIVE).
DEFAULT_TRUTH = json.loads(
    (REPO / "tests" / "data" / "counter-blog-containerd.truth.json").read_text()
)
SECRET = DEFAULT_TRUTH["memory_strings"][0]  # RANDOM_8788_KEY, in pid 7's memory
# containerd 2.3.4's text for a container with an established TCP connection
# (capture-failures.md, "criu failed ... path= .../criu-dump.log")
CRIU_FAILED = (
    'checkpointing container "0123abc" failed: runc did not terminate successfully: exit '
    "status 1: criu failed: type NOTIFY errno 0 path= /run/containerd/"
    "io.containerd.runtime.v2.task/k8s.io/0123abc/criu-dump.log"
)
EXITED = (
    'container "0123abc" is in CONTAINER_EXITED state. only CONTAINER_RUNNING containers can '
    "be checkpointed"
)
#: The fake kubelets' runtimeRequestTimeout in this module (a real kubelet's is 120 s), and
#: the agents' --kubelet-runtime-request-timeout to match.
RUNTIME_REQUEST_TIMEOUT = 3.0


@dataclass
class Identities:
    namespace: str
    operator_identity: str
    #: The operator's token for each node's agent audience, and an intruder's for node 0's.
    operator_tokens: dict[str, str]
    other_token: str
    #: API-server-audience tokens: the operator's (what it used to send agents) and the
    #: intruder's (for the kubelet, which reviews tokens for the API server's audience).
    operator_api_token: str
    other_api_token: str
    agent_kubeconfig: Path
    kubelet_cert: Path
    kubelet_key: Path
    unbound_cert: Path
    unbound_key: Path
    serving_cert: Path
    serving_key: Path
    serving_ca: Path


def _kubeconfig(path: Path, server: str, ca: Path, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "dev", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": "agent", "user": {"token": token}}],
        "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "agent"}}],
        "current-context": "dev",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _agent_rules() -> list[dict[str, Any]]:
    for doc in yaml.safe_load_all(AGENT_RBAC.read_text()):
        if doc and doc.get("kind") == "ClusterRole":
            return list(doc["rules"])
    raise AssertionError(f"no ClusterRole in {AGENT_RBAC}")


@pytest.fixture(scope="module")
def ids(dev_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Identities]:
    if not dev_cluster.local:
        pytest.skip("the agent tests need the dev cluster's fake kubelets")
    root = tmp_path_factory.mktemp("agent-ids")
    suffix = uuid.uuid4().hex[:6]
    ns = f"agent-{suffix}"
    api = dev_cluster.admin_client()
    access.ensure_namespace(api, ns)
    for sa in ("agent", "operator", "intruder"):
        access.create_service_account(api, ns, sa)
    role = f"fc-agent-{suffix}"
    access.create_cluster_role(api, role, _agent_rules())
    access.bind_cluster_role(api, role, role, [access.service_account(ns, "agent")])
    kubelet_user = f"fc-agent-kubelet-{suffix}"
    access.grant_node_checkpoint(api, f"fc-kubelet-{suffix}", [access.user(kubelet_user)])
    kubelet = dev_cluster.issue_client_certificate(kubelet_user)
    unbound = dev_cluster.issue_client_certificate(f"fc-unbound-{suffix}")
    agent_token = access.request_token(api, ns, "agent")
    ca = trustme.CA()
    serving = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(root / "agent-ca.crt"))
    serving.cert_chain_pems[0].write_to_path(str(root / "agent.crt"))
    serving.private_key_pem.write_to_path(str(root / "agent.key"))
    yield Identities(
        namespace=ns,
        operator_identity=f"system:serviceaccount:{ns}:operator",
        operator_tokens={
            node.name: access.request_token(
                api, ns, "operator", audiences=[agent_audience(node.name)]
            )
            for node in dev_cluster.nodes
        },
        other_token=access.request_token(
            api, ns, "intruder", audiences=[agent_audience(dev_cluster.nodes[0].name)]
        ),
        operator_api_token=access.request_token(api, ns, "operator"),
        other_api_token=access.request_token(api, ns, "intruder"),
        agent_kubeconfig=_kubeconfig(
            root / "agent.kubeconfig", dev_cluster.server, dev_cluster.ca_file, agent_token
        ),
        kubelet_cert=kubelet.cert,
        kubelet_key=kubelet.key,
        unbound_cert=unbound.cert,
        unbound_key=unbound.key,
        serving_cert=root / "agent.crt",
        serving_key=root / "agent.key",
        serving_ca=root / "agent-ca.crt",
    )
    access.delete_namespace(api, ns)
    for name in (role, f"fc-kubelet-{suffix}"):
        for kind in ("clusterrolebindings", "clusterroles"):
            apiserver.request(api, "DELETE", f"{RBAC}/{kind}/{name}")


def _config(ids: Identities, node: Any, state: Path, **overrides: Any) -> AgentConfig:
    values: dict[str, Any] = {
        "node_name": node.name,
        "kubeconfig": str(ids.agent_kubeconfig),
        "listen_address": "127.0.0.1",
        "port": 0,
        "advertise_address": "127.0.0.1",
        "tls_cert": ids.serving_cert,
        "tls_key": ids.serving_key,
        "operator_identity": ids.operator_identity,
        "state_dir": state,
        "checkpoint_dir": node.checkpoint_dir,
        "kubelet_auth": KubeletAuth(
            client_cert=ids.kubelet_cert, client_key=ids.kubelet_key, ca_file=node.serving_ca
        ),
        "kubelet_timeout_margin": 5.0,
        "kubelet_runtime_request_timeout": RUNTIME_REQUEST_TIMEOUT,
        "capture_workers": 4,
        "analysis_workers": 1,
        "heartbeat_interval": 1.0,
        "readiness_interval": 2.0,
    }
    values.update(overrides)
    return AgentConfig(**values)


class Caller:
    """The operator's side of the contract: requests with the CA and a token."""

    def __init__(self, endpoint: str, ca: Path, token: str) -> None:
        self.endpoint = endpoint
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(ca)
        self.token = token

    def call(
        self, method: str, path: str, *, token: str | None = None, **kw: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"} if token != "" else {}
        return self.session.request(method, self.endpoint + path, headers=headers, timeout=30, **kw)

    def capture(self, pod: dict[str, Any], container: str = "app", **analysis: Any) -> str:
        meta = pod["metadata"]
        uid = str(uuid.uuid4())
        req = CaptureRequest(
            key=capture_key(uid, container),
            checkpoint_uid=uid,
            checkpoint_namespace=meta["namespace"],
            checkpoint_name=f"fcp-{meta['name']}",
            pod_namespace=meta["namespace"],
            pod_name=meta["name"],
            pod_uid=meta["uid"],
            container=container,
            timeout_seconds=analysis.pop("timeout", 30),
            analysis=analysis or {},
        )
        answer = self.call("POST", "/v1/captures", data=req.to_json())
        assert answer.status_code == 202, answer.text
        return req.key

    def wait(self, key: str, timeout: float = 60.0) -> CaptureStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.call("GET", f"/v1/captures/{key}")
            if answer.status_code == 200:
                status = CaptureStatus.model_validate_json(answer.text)
                if status.state.terminal:
                    return status
            time.sleep(0.2)
        raise AssertionError(f"capture {key} did not finish: {answer.text}")


@pytest.fixture(scope="module", autouse=True)
def short_runtime_request_timeout(dev_cluster: Any) -> Iterator[None]:
    """The kubelets give a checkpoint max(?timeout=, runtimeRequestTimeout): 3 s here, not 2 min,
    so that a hung dump fails within seconds."""
    for node in dev_cluster.nodes:
        node.set_config(runtimeRequestTimeout=RUNTIME_REQUEST_TIMEOUT)
    yield
    for node in dev_cluster.nodes:
        node.set_config(runtimeRequestTimeout=120)


@pytest.fixture(scope="module")
def agent(
    dev_cluster: Any, ids: Identities, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AgentProcess, Caller]]:
    node = dev_cluster.nodes[0]
    runtime = AgentProcess(_config(ids, node, tmp_path_factory.mktemp("agent-state")))
    runtime.start()
    try:
        yield runtime, Caller(runtime.endpoint, ids.serving_ca, ids.operator_tokens[node.name])
    finally:
        runtime.stop()


def _pod(dev_cluster: Any, ids: Identities, node: str, **kwargs: Any) -> dict[str, Any]:
    name = f"p-{uuid.uuid4().hex[:8]}"
    return dict(dev_cluster.create_running_pod(name, node, namespace=ids.namespace, **kwargs))


def _calls_for(node: Any, pod: dict[str, Any]) -> list[dict[str, Any]]:
    marker = f"/{pod['metadata']['namespace']}/{pod['metadata']['name']}/"
    return [c for c in node.calls() if marker in c.get("path", "")]


def test_capture_completes_with_hash_report_and_forensicnode(
    dev_cluster: Any, ids: Identities, agent: tuple[AgentProcess, Caller]
) -> None:
    runtime, caller = agent
    node = dev_cluster.nodes[0]
    pod = _pod(dev_cluster, ids, node.name)
    key = caller.capture(pod, searches=[SECRET["value"]])
    status = caller.wait(key)
    assert status.state == "Completed", status
    assert status.archive is not None and status.kubelet_status_code == 200
    archive = Path(status.archive.path)
    assert archive.parent == node.checkpoint_dir.resolve()
    assert status.archive.sha256 == sha256(archive) == DEFAULT_TRUTH["archive"]["sha256"]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert len(_calls_for(node, pod)) == 1

    report = caller.call("GET", f"/v1/captures/{key}/report").json()
    searches = report["memory"]["searches"]
    hits = [m for s in searches for m in s["matches"]]
    assert {m["pid"] for m in hits} == set(SECRET["found_in_pids"]), searches
    assert report["redacted"] is True

    download = caller.call("GET", f"/v1/captures/{key}/archive")
    assert download.headers["X-Checkpoint-Sha256"] == status.archive.sha256
    assert len(download.content) == status.archive.size_bytes

    published = _published_agent(dev_cluster, node.name)
    assert published.endpoint == runtime.endpoint
    first_beat = published.heartbeat_time
    time.sleep(2.2)
    assert _published_agent(dev_cluster, node.name).heartbeat_time > first_beat


def _published_agent(dev_cluster: Any, node: str) -> AgentStatus:
    """``status.agent`` of the node's ForensicNode, as the operator reads it."""
    fnode = ForensicNodes(dev_cluster.admin_client()).get(node)
    assert fnode is not None and fnode.status is not None and fnode.status.agent is not None
    return fnode.status.agent


def _ready(dev_cluster: Any, node: str, timeout: float = 10.0) -> dict[str, Any]:
    """The node's Ready condition once the agent has written one."""
    deadline = time.monotonic() + timeout
    path = f"/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes/{node}"
    while True:
        fnode = apiserver.request(dev_cluster.admin_client(), "GET", path)
        conditions = (fnode.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c["type"] == "Ready"), None)
        if ready is not None and ready["status"] != "Unknown":
            return dict(ready) | {"checks": fnode["status"].get("checks", [])}
        assert time.monotonic() < deadline, fnode
        time.sleep(0.2)


def test_healthy_node_is_ready_within_ten_seconds(
    dev_cluster: Any, agent: tuple[AgentProcess, Caller]
) -> None:
    runtime, _ = agent
    ready = _ready(dev_cluster, dev_cluster.nodes[0].name)
    assert (ready["status"], ready["reason"]) == ("True", "CaptureReady"), ready
    checks = {c["name"]: c["status"] for c in ready["checks"]}
    assert checks["KubeletTLS"] == checks["CheckpointAuthorization"] == "Pass"
    assert checks["FeatureGate"] == checks["Runtime"] == "Pass"
    transition = datetime.fromisoformat(ready["lastTransitionTime"].replace("Z", "+00:00"))
    assert transition - runtime.started_at < timedelta(seconds=10)
    # The same verdict, and the certificates' expiry, for Prometheus.
    node_name = dev_cluster.nodes[0].name
    metrics = runtime.metrics.render().decode()
    assert (
        f'forensic_checkpoint_agent_node_ready{{node="{node_name}",reason="CaptureReady",'
        'status="True"} 1.0' in metrics
    ), metrics
    auth = runtime.config.kubelet_auth
    for name, pem in (("kubelet-client", auth.client_cert), ("serving", runtime.config.tls_cert)):
        not_after = keys.not_after(pem)
        assert not_after is not None
        line = next(
            line
            for line in metrics.splitlines()
            if line.startswith(
                "forensic_checkpoint_agent_certificate_expiry_timestamp_seconds"
                f'{{certificate="{name}"}}'
            )
        )
        assert float(line.split()[-1]) == not_after.timestamp(), line

    # `kubectl get forensicnodes` shows the runtime and each check through the CRD's columns.
    node = dev_cluster.nodes[0].name
    table = subprocess.run(
        [str(binaries.locate("kubectl")), "get", "forensicnodes", node],
        env={**os.environ, "KUBECONFIG": str(dev_cluster.kubeconfig)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    header, row = table[0].split(), table[1].split()
    assert header[:9] == [
        "NAME",
        "READY",
        "REASON",
        "RUNTIME",
        "TLS",
        "AUTHN",
        "GATE",
        "AUTHZ",
        "CRIU",
    ]
    assert row[:8] == [node, "True", "CaptureReady", row[3], "Pass", "Pass", "Pass", "Pass"]
    assert row[3].startswith(("containerd://", "cri-o://")), row


@pytest.mark.parametrize(
    ("identity", "reason"),
    [("unbound", "KubeletForbidden"), ("wrong-ca", "KubeletTLSError")],
)
def test_misconfigured_agent_reports_not_ready(
    dev_cluster: Any, ids: Identities, tmp_path: Path, identity: str, reason: str
) -> None:
    node = dev_cluster.nodes[1]
    auth = (
        KubeletAuth(
            client_cert=ids.unbound_cert, client_key=ids.unbound_key, ca_file=node.serving_ca
        )
        if identity == "unbound"
        else KubeletAuth(
            client_cert=ids.kubelet_cert, client_key=ids.kubelet_key, ca_file=ids.serving_ca
        )
    )
    runtime = AgentProcess(_config(ids, node, tmp_path / "state", kubelet_auth=auth))
    runtime.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            ready = _ready(dev_cluster, node.name)
            if ready["reason"] == reason:
                break
            assert time.monotonic() < deadline, ready
            time.sleep(0.2)
    finally:
        runtime.stop()
    assert ready["status"] == "False"
    assert ready["message"]
    assert (
        f'forensic_checkpoint_agent_node_ready{{node="{node.name}",reason="{reason}",'
        'status="False"} 0.0' in runtime.metrics.render().decode()
    )
    # A fixed agent replaces the verdict before it announces itself: no stale checks.
    healthy = AgentProcess(_config(ids, node, tmp_path / "state"))
    healthy.start()
    try:
        path = f"/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes/{node.name}"
        status = apiserver.request(dev_cluster.admin_client(), "GET", path)["status"]
    finally:
        healthy.stop()
    [now] = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert (now["status"], now["reason"]) == ("True", "CaptureReady")


@pytest.mark.parametrize("foreign", [False, True])
def test_criu_configuration_is_kept_and_reported(
    dev_cluster: Any, ids: Identities, tmp_path: Path, foreign: bool
) -> None:
    """criuConfig from the chart's values: the agent writes the node's runc.conf (here under a
    temporary host root) and reports it; a file it did not write is left alone and reported."""
    host = tmp_path / "host"
    runc_conf = host / "etc" / "criu" / "runc.conf"
    runc_conf.parent.mkdir(parents=True)
    if foreign:
        runc_conf.write_text("# the admin's own\nlog-file /var/log/criu.log\n")
    values = tmp_path / "agent-values.yaml"
    values.write_text("criuConfig:\n  enabled: true\n  ghostLimitBytes: 10485760\n")
    node = dev_cluster.nodes[1]
    runtime = AgentProcess(
        _config(ids, node, tmp_path / "state", values_file=values, host_root=host)
    )
    runtime.start()
    try:
        deadline = time.monotonic() + 10
        while runtime.readiness is None or runtime.readiness.last is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        runtime.stop()  # no round after this one: what the ForensicNode holds is its result
    ready = _ready(dev_cluster, node.name)
    criu = next(c for c in ready["checks"] if c["name"] == "CRIUConfig")
    text = runc_conf.read_text()
    if foreign:
        assert text.startswith("# the admin's own")  # untouched
        assert (criu["status"], criu["reason"]) == ("Fail", "CRIUConfigConflict")
        assert (ready["status"], ready["reason"]) == ("True", "CaptureReadyWithWarnings")
    else:
        assert "tcp-established" in text and "ghost-limit 10485760" in text
        assert criu["status"] == "Pass"
        assert (ready["status"], ready["reason"]) == ("True", "CaptureReady")


def test_same_key_is_one_kubelet_call(
    dev_cluster: Any, ids: Identities, agent: tuple[AgentProcess, Caller]
) -> None:
    _, caller = agent
    node = dev_cluster.nodes[0]
    pod = _pod(dev_cluster, ids, node.name, fault="latency=1s")
    key = caller.capture(pod)
    request = {
        "key": key,
        "checkpointUid": key.rsplit("-", 1)[0],
        "checkpointNamespace": ids.namespace,
        "checkpointName": "again",
        "podNamespace": ids.namespace,
        "podName": pod["metadata"]["name"],
        "container": "app",
    }
    for _ in range(3):
        assert caller.call("POST", "/v1/captures", json=request).status_code == 200
    assert caller.wait(key).state == "Completed"
    assert caller.call("POST", "/v1/captures", json=request).status_code == 200
    assert len(_calls_for(node, pod)) == 1


@pytest.mark.parametrize(
    "case",
    [
        ({"fault": "gate-off"}, "app", "CheckpointingDisabled"),
        ({}, "nope", "ContainerNotFound"),
        ({"fault": f"error={CRIU_FAILED}"}, "app", "RuntimeError"),
        ({"fault": f"error={EXITED}"}, "app", "ContainerNotRunning"),
        ({"running": False}, "app", "ContainerNotRunning"),
        ({"fault": "hang"}, "app", "Timeout"),
        ({"fault": "reset"}, "app", "KubeletUnreachable"),
    ],
)
def test_kubelet_failures_become_reasons(
    dev_cluster: Any,
    ids: Identities,
    agent: tuple[AgentProcess, Caller],
    case: tuple[dict[str, Any], str, str],
) -> None:
    pod_kwargs, container, reason = case
    _, caller = agent
    node = dev_cluster.nodes[0]
    pod = _pod(dev_cluster, ids, node.name, **pod_kwargs)
    key = caller.capture(pod, container, timeout=2)
    status = caller.wait(key)
    assert status.state == "Failed"
    assert status.reason == reason, status
    assert status.message
    assert status.archive is None
    assert len(_calls_for(node, pod)) == 1


def test_pod_on_another_node_is_not_found(
    dev_cluster: Any, ids: Identities, agent: tuple[AgentProcess, Caller]
) -> None:
    _, caller = agent
    pod = _pod(dev_cluster, ids, dev_cluster.nodes[1].name)
    status = caller.wait(caller.capture(pod))
    assert (status.state, status.reason, status.kubelet_status_code) == (
        "Failed",
        "ContainerNotFound",
        404,
    )


def test_kubelet_identity_and_transport_failures(dev_cluster: Any, ids: Identities) -> None:
    node = dev_cluster.nodes[0]
    pod = _pod(dev_cluster, ids, node.name)
    name = pod["metadata"]["name"]

    def attempt(auth: KubeletAuth, port: int = node.port) -> str:
        with pytest.raises(KubeletError) as info:
            KubeletClient(node.name, node.address, port, auth, timeout_margin=2).checkpoint(
                ids.namespace, name, "app", 5
            )
        return info.value.reason

    unbound = KubeletAuth(
        client_cert=ids.unbound_cert, client_key=ids.unbound_key, ca_file=node.serving_ca
    )
    assert attempt(unbound) == "KubeletForbidden"
    wrong_ca = KubeletAuth(
        client_cert=ids.kubelet_cert, client_key=ids.kubelet_key, ca_file=ids.serving_ca
    )
    assert attempt(wrong_ca) == "KubeletTLSError"
    token_file = ids.agent_kubeconfig.parent / "intruder.token"
    token_file.write_text(ids.other_api_token)
    assert attempt(KubeletAuth(token_file=token_file, ca_file=node.serving_ca)) == (
        "KubeletForbidden"
    )
    token_file.write_text("not-a-token")
    assert attempt(KubeletAuth(token_file=token_file, ca_file=node.serving_ca)) == (
        "KubeletUnauthorized"
    )
    bound = KubeletAuth(
        client_cert=ids.kubelet_cert, client_key=ids.kubelet_key, ca_file=node.serving_ca
    )
    closed = _closed_port(node.address)
    assert attempt(bound, closed) == "KubeletUnreachable"


def _closed_port(address: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def test_only_the_operator_may_call(
    dev_cluster: Any, ids: Identities, agent: tuple[AgentProcess, Caller]
) -> None:
    _, caller = agent
    assert caller.call("GET", "/v1/captures/x-app", token="").status_code == 401
    assert caller.call("GET", "/v1/captures/x-app", token="forged").status_code == 401
    other = caller.call("GET", "/v1/captures/x-app", token=ids.other_token)
    assert other.status_code == 403 and other.json()["reason"] == "Forbidden"
    # The operator's own identity, but not for this node's agent: the API server's audience
    # (what the operator sent every agent before), or another node's agent audience.
    api_audience = caller.call("GET", "/v1/captures/x-app", token=ids.operator_api_token)
    assert api_audience.status_code == 401
    assert agent_audience(dev_cluster.nodes[0].name) in api_audience.json()["message"]
    for_other_node = ids.operator_tokens[dev_cluster.nodes[1].name]
    assert caller.call("GET", "/v1/captures/x-app", token=for_other_node).status_code == 401
    assert caller.call("GET", "/v1/captures/x-app").status_code == 404


def test_delete_removes_the_archive(
    dev_cluster: Any, ids: Identities, agent: tuple[AgentProcess, Caller]
) -> None:
    _, caller = agent
    pod = _pod(dev_cluster, ids, dev_cluster.nodes[0].name)
    key = caller.capture(pod)
    status = caller.wait(key)
    assert status.archive is not None
    archive = Path(status.archive.path)
    assert archive.exists()
    deleted = caller.call("DELETE", f"/v1/captures/{key}").json()
    assert status.archive.path in deleted["deleted"]
    assert not archive.exists()
    assert caller.call("GET", f"/v1/captures/{key}/report").status_code == 404


def test_concurrent_captures(
    dev_cluster: Any, ids: Identities, agent: tuple[AgentProcess, Caller]
) -> None:
    _, caller = agent
    node = dev_cluster.nodes[0]
    pods = [_pod(dev_cluster, ids, node.name, fault="latency=0.5s") for _ in range(6)]
    started = time.monotonic()
    keys = [caller.capture(pod) for pod in pods]
    finals = [caller.wait(key, timeout=120) for key in keys]
    elapsed = time.monotonic() - started
    assert [s.state for s in finals] == ["Completed"] * len(pods)
    assert len({s.archive.sha256 for s in finals if s.archive}) == 1  # the same sample
    assert len({s.archive.path for s in finals if s.archive}) == len(pods)
    for pod in pods:
        assert len(_calls_for(node, pod)) == 1
    print(f"6 concurrent captures on one node: {elapsed:.1f} s")


def _start_agent_process(
    ids: Identities, node: Any, state: Path, log_file: Path, *extra: str
) -> tuple[subprocess.Popen[bytes], Caller]:
    """``forensic-checkpoint agent`` as its own process (so that it can be SIGKILLed)."""
    port = _closed_port()
    with log_file.open("ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "forensic_checkpoint",
                "agent",
                "--node-name",
                node.name,
                "--kubeconfig",
                str(ids.agent_kubeconfig),
                "--listen-address",
                "127.0.0.1",
                "--port",
                str(port),
                "--advertise-address",
                "127.0.0.1",
                "--tls-cert",
                str(ids.serving_cert),
                "--tls-key",
                str(ids.serving_key),
                "--operator-identity",
                ids.operator_identity,
                "--state-dir",
                str(state),
                "--checkpoint-dir",
                str(node.checkpoint_dir),
                "--kubelet-client-cert",
                str(ids.kubelet_cert),
                "--kubelet-client-key",
                str(ids.kubelet_key),
                "--kubelet-ca",
                str(node.serving_ca),
                "--kubelet-runtime-request-timeout",
                str(RUNTIME_REQUEST_TIMEOUT),
                "--analysis-workers",
                "1",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    caller = Caller(f"https://127.0.0.1:{port}", ids.serving_ca, ids.operator_tokens[node.name])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if caller.call("GET", "/healthz").status_code == 200:
                return proc, caller
        except requests.exceptions.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    proc.wait(10)
    raise AssertionError(log_file.read_text())


def _kill_mid_capture(
    ids: Identities, node: Any, pod: dict[str, Any], tmp_path: Path
) -> tuple[str, CaptureStatus, float]:
    """Capture with an agent process, SIGKILL it during the kubelet call, restart it on the
    same state dir: the key, the job's final status, and seconds from restart to that."""
    state, log_file = tmp_path / "state", tmp_path / "agent.log"
    first, caller = _start_agent_process(ids, node, state, log_file)
    try:
        key = caller.capture(pod, timeout=30)
        deadline = time.monotonic() + 10
        while caller.call("GET", f"/v1/captures/{key}").json()["state"] != "Capturing":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)  # the kubelet call is in flight
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    restarted = time.monotonic()
    second, caller = _start_agent_process(ids, node, state, log_file)
    try:
        status = caller.wait(key, timeout=90)
        elapsed = time.monotonic() - restarted
    finally:
        second.terminate()
        second.wait(20)
    return key, status, elapsed


def test_agent_killed_mid_capture_fails_fast_because_the_kubelet_cancelled_the_dump(
    dev_cluster: Any, ids: Identities, tmp_path: Path
) -> None:
    """real-node.md B3: SIGKILL closes the agent's connection, the kubelet cancels the dump
    (containerd: "context canceled") and writes no archive. The restarted agent says so within
    seconds (not after the call's 30 s + margin) and does not call again."""
    node = dev_cluster.nodes[1]
    pod = _pod(dev_cluster, ids, node.name, fault="latency=3s")
    _, status, elapsed = _kill_mid_capture(ids, node, pod, tmp_path)
    assert (status.state, status.reason) == ("Failed", "CaptureInterrupted"), status
    assert elapsed < 20, elapsed  # the restart window (5 s) and start-up, not 30 s + 30 s
    assert "cancels the checkpoint when the calling agent dies" in (status.message or "")
    assert "no archive was written" in (status.message or "")
    assert "not repeated automatically" in (status.message or "")
    assert "Re-create the ForensicCheckpoint" in (status.remediation or "")
    assert status.archive is None
    [call] = _calls_for(node, pod)  # one kubelet call, cut by the kill
    assert call.get("canceled") is True
    time.sleep(3)  # past the dump's end: the kubelet wrote nothing
    assert list(node.checkpoint_dir.glob(f"checkpoint-{pod['metadata']['name']}_*")) == []


def test_agent_killed_mid_capture_adopts_an_archive_written_despite_the_cancel(
    dev_cluster: Any, ids: Identities, tmp_path: Path
) -> None:
    """The rare late file: the runtime had already written the archive when the kubelet saw the
    agent die. The restarted agent adopts it instead of calling again."""
    node = dev_cluster.nodes[1]
    pod = _pod(dev_cluster, ids, node.name, fault="latency=3s;late-file")
    _, status, _ = _kill_mid_capture(ids, node, pod, tmp_path)
    assert status.state == "Completed", status
    assert status.archive is not None
    assert status.archive.sha256 == sha256(Path(status.archive.path))
    assert status.kubelet_status_code is None  # adopted: the restarted agent saw no answer
    assert "adopted" in (tmp_path / "agent.log").read_text()
    [call] = _calls_for(node, pod)
    assert call.get("canceled") is True


def test_a_short_timeout_waits_for_the_kubelets_runtime_request_timeout(
    dev_cluster: Any, ids: Identities, tmp_path: Path
) -> None:
    """real-node.md B1: the kubelet raises timeoutSeconds 1 to its runtimeRequestTimeout, so a
    dump longer than timeout + margin still succeeds there; the agent must wait for it."""
    node = dev_cluster.nodes[1]
    runtime = AgentProcess(_config(ids, node, tmp_path / "state", kubelet_timeout_margin=0.5))
    runtime.start()
    try:
        caller = Caller(runtime.endpoint, ids.serving_ca, ids.operator_tokens[node.name])
        pod = _pod(dev_cluster, ids, node.name, fault="latency=2.5s")
        status = caller.wait(caller.capture(pod, timeout=1))
    finally:
        runtime.stop()
    assert status.state == "Completed", status
    assert status.kubelet_status_code == 200
    assert len(_calls_for(node, pod)) == 1


@pytest.mark.parametrize("late_file", [True, False])
def test_after_a_timeout_a_late_archive_is_kept_and_accounted(
    dev_cluster: Any, ids: Identities, tmp_path: Path, late_file: bool
) -> None:
    """real-node.md B2: the agent gives up (here: an agent whose runtime request timeout is
    shorter than the kubelet's), closes the connection, and the kubelet cancels the dump (no
    archive, first run) or the archive was already being written and lands after the job
    failed (second run). That archive is attached to the failed job: hashed, 0600, a custody
    fact, counted; no kubelet-named file is left on the node that no job claims."""
    node = dev_cluster.nodes[1]
    runtime = AgentProcess(
        _config(
            ids,
            node,
            tmp_path / "state",
            kubelet_timeout_margin=0.5,
            kubelet_runtime_request_timeout=1.0,
        )
    )
    runtime.start()
    try:
        caller = Caller(runtime.endpoint, ids.serving_ca, ids.operator_tokens[node.name])
        fault = "latency=2.5s;late-file" if late_file else "latency=2.5s"
        pod = _pod(dev_cluster, ids, node.name, fault=fault)
        key = caller.capture(pod, timeout=1)
        failed = caller.wait(key)
        assert (failed.state, failed.reason, failed.archive) == ("Failed", "Timeout", None)
        assert failed.late_archive_watch_until is not None
        assert "watches" in (failed.message or "")
        if late_file:
            kept = _until(caller, key, lambda s: s.archive is not None, 20)
        else:
            time.sleep(3)  # past the dump's end
            kept = CaptureStatus.model_validate_json(caller.call("GET", f"/v1/captures/{key}").text)
        metrics = caller.call("GET", "/metrics").text
    finally:
        runtime.stop()
    name = pod["metadata"]["name"]
    on_disk = list(node.checkpoint_dir.resolve().glob(f"checkpoint-{name}_*.tar"))
    [call] = _calls_for(node, pod)
    assert call.get("canceled") is True  # the kubelet saw the agent go
    assert (kept.state, kept.reason) == ("Failed", "Timeout")
    if not late_file:
        assert on_disk == [] and kept.archive is None
        return
    assert kept.archive is not None and on_disk == [Path(kept.archive.path)]
    archive = on_disk[0]
    assert kept.orphan_archive is True
    assert kept.archive.sha256 == sha256(archive)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    [fact] = kept.custody_events
    assert (fact.action, fact.reason) == ("Captured", "OrphanArchive")
    assert 'forensic_checkpoint_agent_orphan_archives_total{action="attached"} 1.0' in metrics


@pytest.mark.parametrize("abandoned", [False, True])
def test_a_capture_deleted_in_flight_has_its_late_archive_deleted_on_landing(
    dev_cluster: Any, ids: Identities, tmp_path: Path, abandoned: bool
) -> None:
    """issue 15 item 8: the ForensicCheckpoint is deleted mid-capture, so the operator's DELETE
    reaches the agent while the kubelet call runs. The agent marks the job (200, ``pending``),
    and the archive the runtime still writes is hashed and deleted as soon as it lands: when
    the kubelet answers, or (``abandoned``) after the agent gave up on the call and the kubelet
    wrote it anyway (late-file), found by the watch, not by the 120 s sweep. The job record
    stays as the account: a Deleted fact with the archive's sha256."""
    node = dev_cluster.nodes[1]
    latency = 3.0
    quick = {"kubelet_timeout_margin": 0.5, "kubelet_runtime_request_timeout": 1.0}
    runtime = AgentProcess(_config(ids, node, tmp_path / "state", **(quick if abandoned else {})))
    runtime.start()
    try:
        caller = Caller(runtime.endpoint, ids.serving_ca, ids.operator_tokens[node.name])
        pod = _pod(dev_cluster, ids, node.name, fault=f"latency={latency}s;late-file")
        key = caller.capture(pod, timeout=1) if abandoned else caller.capture(pod)
        _until(caller, key, lambda s: s.state == "Capturing", 10)
        answer = caller.call("DELETE", f"/v1/captures/{key}")
        assert answer.status_code == 200, answer.text  # before: 409 CaptureInProgress
        assert DeleteResult.model_validate_json(answer.text).pending is True
        status = _until(
            caller, key, lambda s: any(f.action == "Deleted" for f in s.custody_events), 20
        )
        metrics = caller.call("GET", "/metrics").text
    finally:
        runtime.stop()
    assert list(node.checkpoint_dir.resolve().glob(f"checkpoint-{pod['metadata']['name']}_*")) == []
    [call] = _calls_for(node, pod)
    assert bool(call.get("canceled")) is abandoned
    assert status.state == "Failed"
    assert status.reason == ("Timeout" if abandoned else "DeletedWhileCapturing")
    assert status.archive is None
    [fact] = [f for f in status.custody_events if f.action == "Deleted"]
    assert fact.reason == "DeletedWhileCapturing"
    assert fact.sha256 is not None and len(fact.sha256) == 64 and fact.size_bytes
    assert fact.sha256 in (status.message or "")
    # The dump lands ``latency`` after the call; it is deleted within seconds of that.
    assert status.started_at is not None
    assert (fact.time - status.started_at).total_seconds() < latency + 4
    assert 'forensic_checkpoint_agent_orphan_archives_total{action="late-deleted"} 1.0' in metrics


@pytest.fixture(scope="module")
def s3_store() -> Iterator[tuple[str, Any]]:
    """moto's S3 server on loopback, spoken to over HTTP (as the agent speaks to MinIO)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = s3_client(endpoint, "agent-test", "agent-test-secret")
    try:
        yield endpoint, client
    finally:
        server.stop()


def _until(caller: Caller, key: str, done: Any, timeout: float = 60.0) -> CaptureStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = CaptureStatus.model_validate_json(caller.call("GET", f"/v1/captures/{key}").text)
        if done(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def _exported(status: CaptureStatus) -> bool:
    return status.export is not None and status.export.phase == "Exported"


def test_capture_is_exported_verified_and_retained(
    dev_cluster: Any, ids: Identities, s3_store: tuple[str, Any], tmp_path: Path
) -> None:
    """A real capture on the dev cluster goes to S3 with its sha256 read back; a held archive
    survives retention, and once the hold is lifted retention deletes it (it is exported) and
    the job reports a Deleted fact."""
    endpoint, s3 = s3_store
    bucket = f"evidence-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    values = export_values(
        tmp_path,
        endpoint,
        bucket,
        "agent-test",
        "agent-test-secret",
        retention={"protectUnexported": True, "container": {"maxCount": 1}},
    )
    node = dev_cluster.nodes[1]
    runtime = AgentProcess(
        _config(ids, node, tmp_path / "state", values_file=values, retention_interval=3600.0)
    )
    runtime.start()
    try:
        caller = Caller(runtime.endpoint, ids.serving_ca, ids.operator_tokens[node.name])
        pod = _pod(dev_cluster, ids, node.name)
        first = _until(caller, caller.capture(pod), _exported)
        assert first.archive is not None and first.export is not None
        record = first.export.record
        assert record is not None
        local = sha256(Path(first.archive.path))
        stored = s3.get_object(Bucket=bucket, Key=record.url.split("/", 3)[3])["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == record.sha256 == first.archive.sha256 == local
        assert [f.action for f in first.custody_events] == ["Captured", "Exported", "Verified"]
        captured = first.custody_events[0]
        assert captured.kubelet_response is not None
        assert captured.kubelet_response.status_code == 200
        assert captured.actor == f"agent/{node.name}" and captured.container == "app"

        held = caller.call("PUT", f"/v1/captures/{first.key}/hold", json={"hold": True})
        assert held.status_code == 200 and held.json()["held"] is True, held.text
        second = _until(caller, caller.capture(pod), _exported)
        # maxCount 1, but the older archive is held: both stay.
        assert Path(first.archive.path).exists()

        lifted = caller.call("PUT", f"/v1/captures/{first.key}/hold", json={"hold": False})
        assert lifted.status_code == 200 and lifted.json()["held"] is False
        gone = _until(caller, first.key, lambda s: s.archive_deleted_at is not None, 15)
        assert gone.archive_deleted_reason == "RetentionMaxCount"
        assert [f.action for f in gone.custody_events][-1] == "Deleted"
        assert not Path(first.archive.path).exists()
        assert second.archive is not None and Path(second.archive.path).exists()
        assert caller.call("GET", f"/v1/captures/{first.key}/archive").json()["reason"] == (
            "ArchiveDeleted"
        )
        metrics = caller.call("GET", "/metrics").text
        assert 'forensic_checkpoint_agent_exports_total{outcome="Exported"} 2.0' in metrics
        assert (
            'forensic_checkpoint_agent_retention_deletions_total{reason="RetentionMaxCount"} 1.0'
            in metrics
        )
    finally:
        runtime.stop()
