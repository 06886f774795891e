"""What the operator sends to an agent's endpoint is worth nothing elsewhere (issue 15, item 1).

A ForensicNode's endpoint is published by the node's agent, so a compromised node decides where
the operator connects for that node, and it holds that node's agent certificate. Here the
endpoint is such a node's recorder, which answers like an agent that failed; the test checks,
with real TokenReviews, what the operator handed it: a token of the operator's ServiceAccount
for that node's agent audience only, which the API server and every other node's agent refuse.
Before, it was the operator's API-server token.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.operator.operator_e2e_support import NAMESPACE

from forensic_checkpoint.agent_identity import agent_audience, agent_server_name
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint.k8s.reviews import token_review
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import pki, processes
from forensic_checkpoint_dev.stack import LocalStack

pytestmark = pytest.mark.cluster


class _Recorder(http.server.ThreadingHTTPServer):
    authorizations: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Recorder

    def _answer(self) -> None:
        self.server.authorizations.append(self.headers.get("Authorization", ""))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"reason": "Unavailable", "message": "recorder"}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


ROGUE = f"rogue-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def recorder(stack: LocalStack) -> Iterator[_Recorder]:
    """An HTTPS endpoint with the certificate of its node's agent (what a compromised node has:
    the operator's name check passes, so what it is sent is what matters here)."""
    pair = pki.issue(
        stack.agent_ca,
        pki.CertPair(stack.root / "recorder.crt", stack.root / "recorder.key"),
        agent_server_name(ROGUE),
        server_names=(agent_server_name(ROGUE),),
    )
    server = _Recorder(("127.0.0.1", 0), _Handler)
    server.authorizations = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.cert, pair.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _publish(admin: ApiClient, node: str, endpoint: str) -> None:
    """A Node and a ForensicNode whose agent endpoint is ``endpoint``, with a fresh heartbeat."""
    apiserver.request(
        admin,
        "POST",
        "/api/v1/nodes",
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}},
    )
    base = "/apis/forensic-checkpoint.dev/v1alpha1/forensicnodes"
    body = {
        "apiVersion": "forensic-checkpoint.dev/v1alpha1",
        "kind": "ForensicNode",
        "metadata": {"name": node},
    }
    apiserver.request(admin, "POST", base, body)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"status": {"agent": {"endpoint": endpoint, "heartbeatTime": now}}}
    apiserver.request(admin, "PATCH", f"{base}/{node}/status", status)


def test_an_agent_endpoint_receives_only_a_token_for_that_nodes_agent(
    stack: LocalStack, recorder: _Recorder
) -> None:
    node, pod, name = ROGUE, f"pod-{ROGUE}", f"capture-{ROGUE}"
    admin = stack.cluster.admin_client()
    _publish(admin, node, f"https://127.0.0.1:{recorder.server_address[1]}")
    stack.cluster.create_running_pod(NAMESPACE, pod, node)
    stack.create_checkpoint(NAMESPACE, name, {"podName": pod})
    assert processes.wait_until(lambda: bool(recorder.authorizations), 30), (
        "the operator never called"
    )

    scheme, _, token = recorder.authorizations[0].partition(" ")
    assert scheme == "Bearer" and token
    # Not usable at the API server (its own audience) ...
    assert not token_review(admin, token).authenticated
    # ... nor at any other node's agent ...
    assert not token_review(admin, token, [agent_audience("node-1")]).authenticated
    # ... only at this node's agent, as the operator.
    review = token_review(admin, token, [agent_audience(node)])
    assert review.authenticated and review.username == stack.operator.user
    stack.delete_checkpoint(NAMESPACE, name)
