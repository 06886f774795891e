"""The agent certificate signer against a real API server (issue 19): it watches its signer's
CertificateSigningRequests instead of listing them every ``--signer-interval``, so that a new
request is signed at once whatever the interval, and at rest it lists nothing; its watches end
when it is cancelled. The watch itself (``k8s.certificates.CsrWatch``) raises the API's refusal
as a ClusterError, and lists again after its resourceVersion expired (410 Gone; against a
stand-in: the dev cluster's watch cache serves even version 1).

Before, the signer listed every interval (2 s by default) per signer: up to 1 request/s at rest
with both signers, and a request waited up to one interval."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from forensic_checkpoint.agent.identity import keys
from forensic_checkpoint.agent_identity import SIGNER_NAME
from forensic_checkpoint.controller.identity.config import AgentSignerConfig
from forensic_checkpoint.controller.identity.signer import AgentSigner
from forensic_checkpoint.domain.identity.profiles import SERVING
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.certificates import LISTED, CertificateSigningRequests, CsrChange
from forensic_checkpoint.k8s.client import ApiClient, close, from_token
from forensic_checkpoint.k8s.nodes import Nodes
from forensic_checkpoint.k8s.rbac import KubeletClientGrants
from forensic_checkpoint_dev.cluster import access, pki
from forensic_checkpoint_dev.cluster.testing import ClusterHandle

NODE = "node-1"
#: Far longer than any wait below: what the old loop would have waited between two lists.
LONG_INTERVAL = 60.0


@dataclass
class Agent:
    """A ServiceAccount standing in for the agents, with a token bound to NODE (the node claim
    the review wants) and the right to create CSRs."""

    user: str
    client: ApiClient

    def request(self) -> str:
        name = f"fc-test-watch-{secrets.token_hex(4)}"
        CertificateSigningRequests(self.client).create(
            name,
            keys.request_pem(keys.new_key(), SERVING.subject_for(NODE)),
            signer=SIGNER_NAME,
            usages=("digital signature", "server auth"),
            expiration_seconds=600,
            labels={},
        )
        return name


@pytest.fixture(scope="module")
def agent(local: ClusterHandle) -> Iterator[Agent]:
    name = f"agent-{secrets.token_hex(3)}"
    local.create_service_account(name)
    subject = {"kind": "ServiceAccount", "name": name, "namespace": local.namespace}
    local.bind_cluster_role(f"fc-test-{name}", "system:node-bootstrapper", [subject])
    token = access.request_token(local.admin_client(), local.namespace, name, node=NODE)
    client = from_token(local.server, token, ca_file=local.ca_file)
    try:
        yield Agent(local.service_account_user(name), client)
    finally:
        close(client)


@pytest.fixture(scope="module")
def agents_ca(tmp_path_factory: pytest.TempPathFactory) -> pki.CertPair:
    root: Path = tmp_path_factory.mktemp("agents-ca")
    return pki.create_ca(pki.CertPair(root / "ca.crt", root / "ca.key"), "agents-ca")


def signer_for(
    local: ClusterHandle, agent: Agent, ca: pki.CertPair, interval: float
) -> AgentSigner:
    admin = local.admin_client()
    config = AgentSignerConfig(ca.cert, ca.key, agent.user, interval=interval)
    return AgentSigner(
        config, CertificateSigningRequests(admin), Nodes(admin), KubeletClientGrants(admin)
    )


def signed(local: ClusterHandle, name: str) -> bool:
    return CertificateSigningRequests(local.admin_client()).outcome(name).certificate is not None


def metric(local: ClusterHandle, name: str, **labels: str) -> float:
    """The sum of the API server's ``name`` series (its /metrics) with these labels."""
    api = local.admin_client()
    response = api.call_api(*api.param_serialize("GET", "/metrics"), _request_timeout=30)
    text = response.read().decode()  # type: ignore[no-untyped-call]
    total = 0.0
    for series, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def csr_lists(local: ClusterHandle) -> float:
    return metric(
        local, "apiserver_request_total", resource="certificatesigningrequests", verb="LIST"
    )


def csr_watches(local: ClusterHandle) -> float:
    return metric(
        local, "apiserver_longrunning_requests", resource="certificatesigningrequests", verb="WATCH"
    )


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("csr-watch ")]


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` (run off the loop) holds; fails after ``timeout``."""
    started = time.monotonic()
    while not await asyncio.to_thread(check):
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def running(signer: AgentSigner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(signer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_new_request_is_signed_at_once_whatever_the_interval(
    local: ClusterHandle, agent: Agent, agents_ca: pki.CertPair
) -> None:
    signer = signer_for(local, agent, agents_ca, LONG_INTERVAL)

    async def scenario() -> float:
        first = agent.request()
        async with running(signer):
            await eventually(lambda: signed(local, first), 30, "the first pass")
            await asyncio.sleep(2)  # the passes of the start are over
            second = agent.request()
            return await eventually(lambda: signed(local, second), 15, "the request's pass")

    took = asyncio.run(scenario())
    assert took < 5  # a poll would have waited for its next pass, up to 60 s


def test_at_rest_the_signer_lists_nothing_and_keeps_one_watch_per_signer(
    local: ClusterHandle, agent: Agent, agents_ca: pki.CertPair
) -> None:
    """Measured at the API server: its LIST count of CSRs holds still for 5 s while the signer
    runs with a 0.5 s interval (a poll: 10 lists), and one more CSR watch is open."""
    signer = signer_for(local, agent, agents_ca, 0.5)
    watches_before = csr_watches(local)

    async def scenario() -> tuple[float, float]:
        first = agent.request()
        async with running(signer):
            await eventually(lambda: signed(local, first), 30, "the first pass")
            # The start's passes (and the one after the signer's own approval) are over once
            # the count holds still for a second; a poll never gets there.
            for _ in range(10):
                settled = await asyncio.to_thread(csr_lists, local)
                await asyncio.sleep(1)
                if await asyncio.to_thread(csr_lists, local) == settled:
                    break
            before = await asyncio.to_thread(csr_lists, local)
            await asyncio.sleep(5)
            lists = await asyncio.to_thread(csr_lists, local) - before
            return lists, await asyncio.to_thread(csr_watches, local)

    lists, watches = asyncio.run(scenario())
    assert lists == 0
    assert watches == watches_before + 1  # one signer configured: one watch


def test_cancelling_the_signer_ends_its_watches_at_once(
    local: ClusterHandle, agent: Agent, agents_ca: pki.CertPair
) -> None:
    """The leader steps down or the operator stops: the watch threads end, and the API server
    sees the watch closed, long before the watch's own timeout (minutes)."""
    signer = signer_for(local, agent, agents_ca, LONG_INTERVAL)
    watches_before = csr_watches(local)

    async def scenario() -> float:
        async with running(signer):
            await eventually(
                lambda: csr_watches(local) == watches_before + 1, 15, "the signer's watch"
            )
            assert [t.daemon for t in watch_threads()] == [True]
        cancelled = time.monotonic()
        await eventually(lambda: not watch_threads(), 3, "the watch threads' end")
        await eventually(lambda: csr_watches(local) == watches_before, 5, "the watch's close")
        return time.monotonic() - cancelled

    assert asyncio.run(scenario()) < 5


def follow(watch_changes: Iterator[CsrChange]) -> queue.Queue[CsrChange | Exception]:
    """The changes (or the exception that ended them) put in a queue by a daemon thread."""
    seen: queue.Queue[CsrChange | Exception] = queue.Queue()

    def run() -> None:
        try:
            for change in watch_changes:
                seen.put(change)
        except Exception as exc:  # handed to the test
            seen.put(exc)

    threading.Thread(target=run, daemon=True).start()
    return seen


def test_a_refused_watch_raises_the_api_servers_answer(local: ClusterHandle) -> None:
    """A user who may list CSRs but not watch them (the operator's rules before this change):
    the watch raises a ClusterError with the API server's status and message."""
    name = f"list-only-{secrets.token_hex(3)}"
    rule = {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"]}
    access.create_cluster_role(
        local.admin_client(), f"fc-test-{name}", [{**rule, "verbs": ["get", "list"]}]
    )
    local.create_service_account(name)
    subject = {"kind": "ServiceAccount", "name": name, "namespace": local.namespace}
    local.bind_cluster_role(f"fc-test-{name}", f"fc-test-{name}", [subject])
    client = from_token(local.server, local.request_token(name), ca_file=local.ca_file)
    watch = CertificateSigningRequests(client).watch(SIGNER_NAME)
    try:
        seen = follow(watch.changes())
        assert seen.get(timeout=15) == CsrChange(LISTED)
        refused = seen.get(timeout=15)
        assert isinstance(refused, ClusterError), refused
        assert refused.status_code == 403
        assert "cannot watch resource" in refused.message
    finally:
        watch.close()
        close(client)


class _ExpiringApi(BaseHTTPRequestHandler):
    """An API server stand-in for the one answer a dev cluster does not give on demand (its
    watch cache serves even resourceVersion 1): the CSR list is at version 7; a watch from 7
    sends one request (version 8) and ends; a watch from any other version gets the ERROR event
    of an expired version (410 Gone), as the API server sends it."""

    seen: list[dict[str, list[str]]]

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        self.seen.append(query)
        events: list[dict[str, Any]]
        if "watch" not in query:
            events = [{"metadata": {"resourceVersion": "7"}, "items": []}]
        elif query["resourceVersion"] == ["7"]:
            csr = {"metadata": {"name": "csr-1", "resourceVersion": "8"}, "spec": {}}
            events = [{"type": "ADDED", "object": csr}]
        else:
            status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
            events = [{"type": "ERROR", "object": status}]
        body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_watch_lists_again_when_its_version_expired() -> None:
    seen: list[dict[str, list[str]]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Api", (_ExpiringApi,), {"seen": seen}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = from_token(f"http://127.0.0.1:{server.server_address[1]}", "t")
    watch = CertificateSigningRequests(client).watch(SIGNER_NAME)
    try:
        changes = follow(watch.changes(since="1"))
        first, second = changes.get(timeout=10), changes.get(timeout=10)
    finally:
        watch.close()
        server.shutdown()
        server.server_close()
        close(client)
    assert first == CsrChange(LISTED), first
    assert isinstance(second, CsrChange) and second.kind == "ADDED", second
    assert second.state is not None and second.state.spec.name == "csr-1"
    watch_from, listing, watch_again = seen[:3]
    assert (watch_from["resourceVersion"], watch_from["watch"]) == (["1"], ["true"])
    assert watch_from["fieldSelector"] == [f"spec.signerName={SIGNER_NAME}"]
    assert watch_from["allowWatchBookmarks"] == ["true"] and "timeoutSeconds" in watch_from
    assert "watch" not in listing and "resourceVersion" not in listing
    assert watch_again["resourceVersion"] == ["7"]
