"""Many fake node agents in one process, for the operator's scale benchmark (100 real agents,
each with its analysis workers, do not fit on a 2-core machine).

Each fake agent serves the real agent's HTTP API with the real code: ``AgentServer`` (routes,
TLS with the node's own serving certificate from the agents' CA, connection bounds) and the real
``Authenticator`` (a TokenReview, with the agent ServiceAccount's identity, of the operator's
token for that node's agent audience). It publishes and heartbeats its ForensicNode as an agent
does, but with the identity it is given (the chart's admission policy wants a token bound to a
real Node for the agent's own; the fake nodes have no Node objects). Only the capture behind
the API is fake: a job completes ``capture_seconds`` after it is queued, with a fixed archive
digest and the agent's ``Captured`` custody fact, without a kubelet (each first request of a
key counts as the kubelet call it would make, so a duplicate call shows).
:meth:`FakeAgentFleet.retire` does what retention does to a kept archive.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path

from forensic_checkpoint.agent.capture.service import MAX_STATUS_WAIT
from forensic_checkpoint.agent.http.auth import Authenticator
from forensic_checkpoint.agent.http.server import AgentServer, tls_context
from forensic_checkpoint.agent.metrics import AgentMetrics
from forensic_checkpoint.agent_identity import agent_audience
from forensic_checkpoint.api.agent import (
    ArchiveInfo,
    CaptureDigests,
    CaptureRequest,
    CaptureState,
    CaptureStatus,
    CustodyFact,
    DeleteResult,
    digest_of,
)
from forensic_checkpoint.api.custody import CustodyAction
from forensic_checkpoint.api.forensicnode import AgentStatus
from forensic_checkpoint.errors import ClusterError, NotFoundError
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint.k8s.nodes import ForensicNodes
from forensic_checkpoint.k8s.reviews import AccessReviews
from forensic_checkpoint_dev.stack import LocalStack

_SHA = "0" * 64


def _now() -> datetime:
    return datetime.now(UTC)


class FakeCaptureService:
    """What ``AgentServer`` calls, with jobs in memory and no kubelet."""

    def __init__(self, node_name: str, capture_seconds: float) -> None:
        self.node_name = node_name
        self.metrics = AgentMetrics()
        self.capture_seconds = capture_seconds
        self.kubelet_calls: Counter[str] = Counter()
        #: Every capture request, the ones the agent answers with the existing job included.
        self.requests: Counter[str] = Counter()
        self._jobs: dict[str, CaptureStatus] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a waiting status request's wake-up

    def submit(self, request: CaptureRequest) -> tuple[CaptureStatus, bool]:
        with self._lock:
            self.requests[request.key] += 1
            existing = self._jobs.get(request.key)
            if existing is not None:
                return existing, False
            status = CaptureStatus(key=request.key, state=CaptureState.QUEUED, started_at=_now())
            self._jobs[request.key] = status
            self.kubelet_calls[request.key] += 1
        timer = threading.Timer(self.capture_seconds, self._complete, (request,))
        timer.daemon = True
        timer.start()
        return status, True

    def _complete(self, request: CaptureRequest) -> None:
        now = _now()
        archive = ArchiveInfo(
            path=f"/var/lib/kubelet/checkpoints/{request.key}.tar",
            sha256=_SHA,
            size_bytes=4096,
            captured_at=now,
        )
        fact = self._fact(request.container, CustodyAction.CAPTURED, now)
        with self._lock:
            self._jobs[request.key] = CaptureStatus(
                key=request.key,
                state=CaptureState.COMPLETED,
                archive=archive,
                started_at=self._jobs[request.key].started_at,
                finished_at=now,
                custody_events=[fact],
            )
            self._changed.notify_all()

    def _fact(self, container: str, action: CustodyAction, at: datetime) -> CustodyFact:
        return CustodyFact(
            action=action,
            time=at,
            actor=f"agent/{self.node_name}",
            node=self.node_name,
            container=container,
            sha256=_SHA,
            size_bytes=4096,
            reason="RetentionMaxAge" if action is CustodyAction.DELETED else None,
        )

    def retire(self, key: str) -> None:
        """Retention deletes the job's archive: the job stays, with its ``Deleted`` fact."""
        with self._lock:
            job = self._get(key)
            now = _now()
            container = job.custody_events[0].container if job.custody_events else "app"
            fact = self._fact(container, CustodyAction.DELETED, now)
            self._jobs[key] = job.model_copy(
                update={
                    "archive_deleted_at": now,
                    "archive_deleted_reason": "RetentionMaxAge",
                    "custody_events": [*job.custody_events, fact],
                }
            )

    def _get(self, key: str) -> CaptureStatus:
        job = self._jobs.get(key)
        if job is None:
            raise NotFoundError(f"no capture with key {key}", reason="NotFound")
        return job

    def status(
        self, key: str, *, wait_while: Collection[CaptureState] = (), timeout: float = 0.0
    ) -> CaptureStatus:
        """As the real service: with ``wait_while``, once the job has left those states or has
        a new custody fact (or after ``timeout`` seconds, at most the agent's
        ``MAX_STATUS_WAIT``)."""
        with self._lock:
            deadline = time.monotonic() + min(timeout, MAX_STATUS_WAIT)
            facts = len(self._get(key).custody_events)
            while (
                self._get(key).state in wait_while and len(self._get(key).custody_events) == facts
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._get(key)

    def digests(self) -> CaptureDigests:
        with self._lock:
            jobs = list(self._jobs.values())
        return CaptureDigests(node_name=self.node_name, items=[digest_of(j) for j in jobs])

    def set_hold(self, key: str, hold: bool) -> CaptureStatus:
        with self._lock:
            job = self._get(key).model_copy(update={"held": hold})
            self._jobs[key] = job
            return job

    def delete(self, key: str) -> DeleteResult:
        with self._lock:
            job = self._jobs.pop(key, None)
        if job is None:
            raise NotFoundError(f"no capture with key {key}", reason="NotFound")
        return DeleteResult(key=key, deleted=[job.archive.path] if job.archive else [])

    def report_file(self, key: str) -> Path:
        raise NotFoundError("a fake agent keeps no report", reason="NotFound")

    def archive_file(self, key: str) -> tuple[Path, ArchiveInfo]:
        raise NotFoundError("a fake agent keeps no archive", reason="NotFound")

    def queue_depth(self) -> int:
        with self._lock:
            return sum(not j.state.terminal for j in self._jobs.values())


class FakeAgentFleet:
    """One fake agent per node name, all in this process (a serving thread each)."""

    def __init__(
        self,
        stack: LocalStack,
        api: ApiClient,
        writer: ApiClient,
        nodes: Sequence[str],
        *,
        capture_seconds: float = 0.5,
        heartbeat_seconds: float = 10.0,
    ) -> None:
        """``api`` is a client with the agent ServiceAccount's identity (its TokenReviews),
        ``writer`` one that may write ForensicNodes."""
        self.stack = stack
        self.nodes = list(nodes)
        self.services = {n: FakeCaptureService(n, capture_seconds) for n in self.nodes}
        self.servers: dict[str, AgentServer] = {}
        self._forensic_nodes = ForensicNodes(writer)
        self._reviews = AccessReviews(api)
        self._heartbeat = heartbeat_seconds
        self._stop = threading.Event()
        self._beats = threading.Thread(target=self._beat_loop, daemon=True)

    def start(self) -> None:
        for node in self.nodes:
            pair = self.stack.agent_certificate(node)
            audience = agent_audience(node)

            def review(token: str, audience: str = audience) -> tuple[bool, str]:
                return self._reviews.token_review(token, [audience])[:2]

            server = AgentServer(
                ("127.0.0.1", 0),
                service=self.services[node],  # type: ignore[arg-type]  # the API it calls
                authenticator=Authenticator(review, self.stack.operator.user),
                tls=tls_context(pair.cert, pair.key),
            )
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers[node] = server
            self._forensic_nodes.ensure(node, labels={})
        self.beat()
        self._beats.start()

    def beat(self) -> None:
        for node, server in self.servers.items():
            service = self.services[node]
            self._forensic_nodes.set_agent(
                node,
                AgentStatus(
                    endpoint=f"https://127.0.0.1:{server.port}",
                    heartbeat_time=_now(),
                    queue_depth=service.queue_depth(),
                ),
            )

    def _beat_loop(self) -> None:
        while not self._stop.wait(self._heartbeat):
            try:
                self.beat()
            except ClusterError:
                continue  # the next beat tries again, as an agent's does

    def kubelet_calls(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for service in self.services.values():
            total.update(service.kubelet_calls)
        return total

    def capture_requests(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for service in self.services.values():
            total.update(service.requests)
        return total

    def retire(self, node: str, key: str) -> None:
        self.services[node].retire(key)

    def stop(self) -> None:
        self._stop.set()
        for server in self.servers.values():
            server.shutdown()
            server.server_close()
