"""The agent's HTTPS API over real TLS: routes, status codes, auth decisions, streaming."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
from tests.agent.agent_support import DirKubelet, Pki, hashing_analyzer, request, sha256
from tests.factories import capture_service, serve_in_thread

from forensic_checkpoint.agent.http.auth import Authenticator
from forensic_checkpoint.agent.http.server import AgentServer, ReloadingTLS, tls_context
from forensic_checkpoint.api.agent import SHA256_HEADER, CaptureDigests, CaptureStatus, DeleteResult
from forensic_checkpoint.errors import ClusterError

OPERATOR = "system:serviceaccount:forensic-checkpoint:operator"
OP_TOKEN = "op-token"
TOKENS = {OP_TOKEN: OPERATOR, "other-token": "system:serviceaccount:default:intruder"}


class Agent:
    def __init__(self, server: AgentServer, kubelet: DirKubelet, pki: Pki) -> None:
        self.url = f"https://127.0.0.1:{server.port}"
        self.server = server
        self.kubelet = kubelet
        self.session = requests.Session()
        self.session.verify = str(pki.ca)
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.reviews = 0

    def call(
        self, method: str, path: str, token: str | None = OP_TOKEN, **kw: object
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.session.request(method, self.url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["token"])
def agent(
    request: pytest.FixtureRequest, tmp_path: Path, pki: Pki, sample_tar: Path
) -> Iterator[Agent]:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    kubelet = DirKubelet(checkpoints, sample_tar)
    service = capture_service(tmp_path / "state", kubelet, checkpoints, hashing_analyzer)
    holder: dict[str, Agent] = {}

    def review(token: str) -> tuple[bool, str]:
        holder["agent"].reviews += 1
        if token == "broken-apiserver":
            raise ClusterError("API server unreachable")
        return (token in TOKENS, TOKENS.get(token, ""))

    server = AgentServer(
        ("127.0.0.1", 0),
        service=service,
        authenticator=Authenticator(review, OPERATOR),
        tls=tls_context(
            pki.server_cert, pki.server_key, pki.ca if request.param == "mtls" else None
        ),
        operator_cert_cn="forensic-checkpoint-operator" if request.param == "mtls" else None,
    )
    holder["agent"] = Agent(server, kubelet, pki)
    serve_in_thread(server)
    yield holder["agent"]
    server.shutdown()
    server.server_close()
    service.shutdown(wait=True)


def wait_done(agent: Agent, key: str) -> CaptureStatus:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = CaptureStatus.model_validate_json(agent.call("GET", f"/v1/captures/{key}").text)
        if status.state.terminal:
            return status
        time.sleep(0.05)
    raise AssertionError(key)


def test_capture_lifecycle(agent: Agent) -> None:
    body = request("uid1-app").to_json()
    first = agent.call("POST", "/v1/captures", data=body)
    assert first.status_code == 202, first.text
    assert first.json()["state"] == "Queued"
    second = agent.call("POST", "/v1/captures", data=body)
    assert second.status_code == 200
    status = wait_done(agent, "uid1-app")
    assert status.state == "Completed" and status.archive is not None
    assert len(agent.kubelet.calls) == 1

    report = agent.call("GET", "/v1/captures/uid1-app/report")
    assert report.status_code == 200 and report.json()["sha256"] == status.archive.sha256

    archive = agent.call("GET", "/v1/captures/uid1-app/archive", stream=True)
    assert archive.status_code == 200
    assert archive.headers[SHA256_HEADER] == status.archive.sha256
    data = b"".join(archive.iter_content(65536))
    assert len(data) == status.archive.size_bytes
    assert data == Path(status.archive.path).read_bytes()

    deleted = DeleteResult.model_validate_json(agent.call("DELETE", "/v1/captures/uid1-app").text)
    assert status.archive.path in deleted.deleted
    assert not Path(status.archive.path).exists()
    gone = agent.call("GET", "/v1/captures/uid1-app")
    assert gone.status_code == 404 and gone.json()["reason"] == "NotFound"


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        (None, 401, "Unauthenticated"),
        ("forged", 401, "Unauthenticated"),
        ("other-token", 403, "Forbidden"),
        ("broken-apiserver", 503, "AuthenticationUnavailable"),
    ],
)
def test_only_the_operator_gets_in(
    agent: Agent, token: str | None, status: int, reason: str
) -> None:
    for method, path, body in (
        ("POST", "/v1/captures", request("uid9-app").to_json()),
        ("GET", "/v1/captures/uid9-app", None),
        ("GET", "/v1/captures/uid9-app/archive", None),
        ("DELETE", "/v1/captures/uid9-app", None),
    ):
        answer = agent.call(method, path, token=token, data=body)
        assert answer.status_code == status, (method, path, answer.text)
        assert answer.json()["reason"] == reason
    assert agent.kubelet.calls == []


@pytest.mark.parametrize("token", [None, "forged", "other-token"])
def test_a_finished_captures_report_and_hold_stay_closed_to_anyone_but_the_operator(
    agent: Agent, token: str | None
) -> None:
    """The report holds the analysis (process tree, sockets, memory hits): an existing one must
    be refused, not merely absent, to a caller that is not the operator."""
    agent.call("POST", "/v1/captures", data=request("uid8-app").to_json())
    assert wait_done(agent, "uid8-app").state == "Completed"
    report = agent.call("GET", "/v1/captures/uid8-app/report", token=token)
    assert report.status_code in (401, 403), report.text
    assert "sha256" not in report.json()
    hold = agent.call("PUT", "/v1/captures/uid8-app/hold", token=token, json={"hold": True})
    assert hold.status_code in (401, 403), hold.text
    status = CaptureStatus.model_validate_json(agent.call("GET", "/v1/captures/uid8-app").text)
    assert not status.held


def test_token_reviews_are_cached(agent: Agent) -> None:
    for _ in range(5):
        assert agent.call("GET", "/v1/captures/nope-app").status_code == 404
    assert agent.reviews == 1


def test_bad_requests(agent: Agent) -> None:
    invalid = agent.call("POST", "/v1/captures", data='{"key": "UPPER"}')
    assert invalid.status_code == 400 and invalid.json()["reason"] == "InvalidRequest"
    assert agent.call("POST", "/v1/captures", data="not json").status_code == 400
    assert agent.call("GET", "/v1/other").status_code == 404
    assert agent.call("PUT", "/v1/captures/a-b").status_code in (404, 405, 501)
    report = agent.call("GET", "/v1/captures/unknown-app/report")
    assert report.status_code == 404


def test_healthz_and_metrics_need_no_token(agent: Agent) -> None:
    health = agent.call("GET", "/healthz", token=None)
    assert health.status_code == 200 and health.json()["nodeName"] == "node-1"
    agent.call("POST", "/v1/captures", data=request("uid2-app").to_json())
    wait_done(agent, "uid2-app")
    metrics = agent.call("GET", "/metrics", token=None).text
    for name in (
        "forensic_checkpoint_agent_captures_total",
        "forensic_checkpoint_agent_capture_duration_seconds_bucket",
        "forensic_checkpoint_agent_analysis_duration_seconds_bucket",
        "forensic_checkpoint_agent_archive_bytes_total",
        "forensic_checkpoint_agent_queue_depth",
        "forensic_checkpoint_agent_kubelet_errors_total",
    ):
        assert name in metrics


def test_plain_http_and_untrusted_clients_get_nothing(agent: Agent, pki: Pki) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(agent.url.replace("https", "http") + "/healthz", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        untrusting = requests.Session()
        untrusting.trust_env = False
        untrusting.get(agent.url + "/healthz", verify=str(pki.other_ca), timeout=5)
    # the server survives both
    assert agent.call("GET", "/healthz").status_code == 200


def test_archive_sha_matches_file(agent: Agent) -> None:
    agent.call("POST", "/v1/captures", data=request("uid3-app").to_json())
    status = wait_done(agent, "uid3-app")
    assert status.archive is not None
    assert status.archive.sha256 == sha256(Path(status.archive.path))


@pytest.mark.parametrize("agent", ["mtls"], indirect=True)
def test_mutual_tls_is_an_alternative_to_the_token(agent: Agent, pki: Pki) -> None:
    def get(cert: tuple[str, str] | None) -> requests.Response:
        session = requests.Session()
        session.trust_env = False
        return session.get(
            agent.url + "/v1/captures/nope-app", verify=str(pki.ca), cert=cert, timeout=10
        )

    assert get((str(pki.operator_cert), str(pki.operator_key))).status_code == 404  # in, no job
    assert get(None).status_code == 401
    # the agent's own certificate: signed by the CA, but not the operator's name
    assert get((str(pki.client_cert), str(pki.client_key))).status_code == 401
    with pytest.raises(requests.exceptions.ConnectionError):
        get((str(pki.rogue_cert), str(pki.rogue_key)))  # same name, untrusted CA: handshake fails
    assert agent.reviews == 0
    # a token still works next to mTLS
    assert agent.call("GET", "/v1/captures/nope-app").status_code == 404


@pytest.mark.slow  # issues certificates, three TLS handshakes
def test_a_rotated_serving_certificate_is_used_without_a_restart(
    tmp_path: Path, pki: Pki, sample_tar: Path
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copyfile(pki.server_cert, cert)
    shutil.copyfile(pki.server_key, key)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    kubelet = DirKubelet(checkpoints, sample_tar)
    service = capture_service(tmp_path / "state", kubelet, checkpoints, hashing_analyzer)
    server = AgentServer(
        ("127.0.0.1", 0),
        service=service,
        authenticator=Authenticator(lambda token: (False, ""), OPERATOR),
        tls=ReloadingTLS(cert, key, check_every=0),
    )
    serve_in_thread(server)
    url = f"https://127.0.0.1:{server.port}/healthz"

    def healthz(ca: Path) -> int:
        session = requests.Session()
        session.trust_env = False
        return session.get(url, verify=str(ca), timeout=5).status_code

    try:
        assert healthz(pki.ca) == 200
        new = trustme.CA()
        issued = new.issue_cert("127.0.0.1")
        issued.private_key_pem.write_to_path(str(key))
        issued.cert_chain_pems[0].write_to_path(str(cert))
        new.cert_pem.write_to_path(str(tmp_path / "new-ca.crt"))
        assert healthz(tmp_path / "new-ca.crt") == 200
        with pytest.raises(requests.exceptions.SSLError):
            healthz(pki.ca)
        cert.write_text("half written")  # a broken pair keeps the last good one
        assert healthz(tmp_path / "new-ca.crt") == 200
    finally:
        server.shutdown()
        server.server_close()
        service.shutdown(wait=True)


def test_hold_route(agent: Agent) -> None:
    """PUT .../hold sets and lifts the legal hold; DELETE refuses a held archive that exists
    nowhere else (no export here), and the Captured fact is in the status."""
    assert agent.call("POST", "/v1/captures", data=request("uid3-app").to_json()).ok
    status = wait_done(agent, "uid3-app")
    assert [f.action for f in status.custody_events] == ["Captured"]
    assert status.held is False

    path = "/v1/captures/uid3-app/hold"
    assert agent.call("PUT", path, token=None, json={"hold": True}).status_code == 401
    assert agent.call("PUT", path, json={"hold": "maybe"}).status_code == 400
    assert agent.call("PUT", path).status_code == 400
    assert agent.call("GET", path).status_code == 405
    missing = agent.call("PUT", "/v1/captures/nope-app/hold", json={"hold": True})
    assert missing.status_code == 404

    held = agent.call("PUT", path, json={"hold": True})
    assert held.status_code == 200 and held.json()["held"] is True
    assert agent.call("GET", "/v1/captures/uid3-app").json()["held"] is True
    refused = agent.call("DELETE", "/v1/captures/uid3-app")
    assert refused.status_code == 409 and refused.json()["reason"] == "HeldNotExported"
    assert status.archive is not None and Path(status.archive.path).exists()

    assert agent.call("PUT", path, json={"hold": False}).json()["held"] is False
    assert agent.call("DELETE", "/v1/captures/uid3-app").status_code == 200
    assert not Path(status.archive.path).exists()


def test_a_status_request_can_wait_for_the_kubelet_call_to_end(agent: Agent) -> None:
    """``?waitWhile=Queued,Capturing``: the answer comes when the call ended, so the operator
    sees it (and frees an alert capture's slot) at once, not at its next poll (issue 19)."""
    agent.kubelet.delay = 0.6
    assert agent.call("POST", "/v1/captures", data=request("uid9-app").to_json()).ok
    started = time.monotonic()
    answer = agent.call("GET", "/v1/captures/uid9-app?waitWhile=Queued,Capturing&timeoutSeconds=5")
    waited = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] not in ("Queued", "Capturing")
    assert 0.3 < waited < 4.0, waited
    # A plain GET, or a wait for a state the job is not in, answers at once.
    started = time.monotonic()
    assert agent.call("GET", "/v1/captures/uid9-app?waitWhile=Queued&timeoutSeconds=5").ok
    assert agent.call("GET", "/v1/captures/uid9-app?waitWhile=Bogus&timeoutSeconds=5").ok
    assert time.monotonic() - started < 1.0


def test_the_job_list_gives_the_operator_one_line_per_job(agent: Agent) -> None:
    """``GET /v1/captures``: what the operator's one call per node needs to follow every kept
    archive (a new custody fact, a deleted archive), closed to anyone but the operator."""
    agent.call("POST", "/v1/captures", data=request("uid7-app").to_json())
    done = wait_done(agent, "uid7-app")
    listed = CaptureDigests.model_validate_json(agent.call("GET", "/v1/captures").text)
    assert listed.node_name == agent.server.service.node_name
    (line,) = listed.items
    assert (line.key, line.state, line.archive_deleted) == ("uid7-app", "Completed", False)
    assert line.custody_events == len(done.custody_events) > 0
    for token in (None, "other-token"):
        refused = agent.call("GET", "/v1/captures", token=token)
        assert refused.status_code in (401, 403) and "items" not in refused.json()
