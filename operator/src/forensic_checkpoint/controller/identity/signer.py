"""The signer loop: in each pass, each request for one of the agents' signers (serving,
kubelet client: a :class:`~forensic_checkpoint.domain.identity.profiles.Profile` and a CA each,
those configured) that nobody has finished gets the domain's verdict: approved and signed, or
denied with the reason. A kubelet client certificate is signed only once its node's agent user
may create ``nodes/checkpoint`` on that node alone (``k8s.rbac``). Requests approved by someone
else are signed only if they pass the same review; otherwise they are marked ``Failed``.

A pass lists each signer's requests (a field selector) when one of them changes: a watch per
signer (``k8s.certificates.CsrWatch``), on a daemon thread, wakes the loop, and the wake-ups
that come during a pass make one pass after it. At rest that costs nothing but the watch's own
renewal every few minutes; a poll listed every ``--signer-interval`` (up to 1 request/s with both
signers, issue 19). Not a kopf handler: kopf would keep its progress in annotations on the CSRs
(a ``patch`` right on every CSR in the cluster). An approval or a signature that failed is tried
again ``--signer-interval`` seconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter

from forensic_checkpoint.controller.identity.config import AgentSignerConfig
from forensic_checkpoint.domain.identity import agent_certificates, signing
from forensic_checkpoint.domain.identity.csr_facts import parse_request
from forensic_checkpoint.domain.identity.profiles import KUBELET_CLIENT, SERVING, Profile
from forensic_checkpoint.errors import ClusterError, ConfigError
from forensic_checkpoint.k8s.certificates import LISTED, CsrChange, CsrState
from forensic_checkpoint.k8s.nodes import NodeFacts

log = logging.getLogger(__name__)

#: Seconds between passes with nothing to wake them: a safety net for what a watch cannot
#: show, such as a Node created after its request was denied as unknown (the request does not
#: change) or an event lost while a watch was being renewed.
RESYNC_SECONDS = 300.0
#: Longest wait before a failed watch lists and watches again (it starts at the interval).
WATCH_BACKOFF_MAX = 60.0

DECISIONS = Counter(
    "forensic_checkpoint_operator_agent_certificates_total",
    "Agent certificate requests handled by the operator's signers, by signer, outcome and reason.",
    ["signer", "outcome", "reason"],
)


class RequestWatch(Protocol):
    """``k8s.certificates.CsrWatch``."""

    def changes(self) -> Iterator[CsrChange]: ...

    def close(self) -> None: ...


class SignerRequests(Protocol):
    """``k8s.certificates.CertificateSigningRequests``."""

    def for_signer(self, signer: str) -> list[CsrState]: ...

    def watch(self, signer: str) -> RequestWatch: ...

    def approve(self, name: str, *, reason: str, message: str) -> None: ...

    def deny(self, name: str, *, reason: str, message: str) -> None: ...

    def issue(self, name: str, certificate_pem: bytes) -> None: ...

    def fail(self, name: str, *, reason: str, message: str) -> None: ...


class CheckpointGrants(Protocol):
    """``k8s.rbac.KubeletClientGrants``."""

    def ensure(self, node: NodeFacts) -> None: ...


class NodeLookup(Protocol):
    """``k8s.nodes.Nodes``."""

    def get(self, name: str) -> NodeFacts | None: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AgentSigner:
    def __init__(
        self,
        config: AgentSignerConfig,
        requests: SignerRequests,
        nodes: NodeLookup,
        grants: CheckpointGrants,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._signers: list[tuple[Profile, signing.SigningCA]] = []
        for profile, cert, key, flags in (
            (SERVING, config.ca_file, config.ca_key_file, "--agent-ca-file/--agent-ca-key-file"),
            (
                KUBELET_CLIENT,
                config.kubelet_client_ca_file,
                config.kubelet_client_ca_key_file,
                "--kubelet-client-ca-file/--kubelet-client-ca-key-file",
            ),
        ):
            if cert is not None and key is not None:
                self._signers.append((profile, _load_ca(cert, key, flags)))
        self._config = config
        self._requests = requests
        self._nodes = nodes
        self._grants = grants
        self._clock = clock

    def run_once(self) -> int:
        """One pass over the open requests; returns how many it acted on."""
        return sum(acted for acted, _ in self._passes())

    def _passes(self) -> Iterator[tuple[int, int]]:
        for profile, ca in self._signers:
            yield self._pass(profile, ca)

    def _pass(self, profile: Profile, ca: signing.SigningCA) -> tuple[int, int]:
        """How many requests it acted on, and on how many an action failed."""
        acted = failed = 0
        for state in self._requests.for_signer(profile.signer_name):
            if not _open(state):
                continue
            try:
                self._handle(state, profile, ca)
            except ClusterError as exc:  # e.g. deleted or changed meanwhile: retried
                log.warning("agent certificate request %s: %s", state.spec.name, exc.message)
                failed += 1
                continue
            acted += 1
        return acted, failed

    def _handle(self, state: CsrState, profile: Profile, ca: signing.SigningCA) -> None:
        spec = state.spec
        facts = parse_request(spec.request)
        looked_up: dict[str, NodeFacts | None] = {}  # the review's read serves the grant too

        def node_exists(name: str) -> bool:
            looked_up[name] = self._nodes.get(name)
            return looked_up[name] is not None

        verdict = agent_certificates.review(
            spec,
            facts,
            agent_user=self._config.agent_user,
            node_exists=node_exists,
            profile=profile,
        )
        signer = profile.signer_name
        if not verdict.approved:
            if state.decision == "Approved":  # by someone else: still not signed
                self._requests.fail(spec.name, reason=verdict.reason, message=verdict.message)
                outcome = "failed"
            else:
                self._requests.deny(spec.name, reason=verdict.reason, message=verdict.message)
                outcome = "denied"
            log.warning("agent certificate request %s %s: %s", spec.name, outcome, verdict.message)
            DECISIONS.labels(signer=signer, outcome=outcome, reason=verdict.reason).inc()
            return
        if profile.grants_node_checkpoint:
            node = looked_up.get(verdict.node)
            if node is None:  # never for an approved request: the review found it
                return
            self._grants.ensure(node)
        if state.decision == "":
            self._requests.approve(spec.name, reason=verdict.reason, message=verdict.message)
        if facts.request is None or verdict.subject is None:  # never when approved
            return
        certificate = signing.issue(
            facts.request,
            subject=verdict.subject,
            ca=ca,
            now=self._clock(),
            valid_for=signing.lifetime(spec.expiration_seconds, self._config.max_seconds),
        )
        self._requests.issue(spec.name, certificate)
        log.info("agent certificate request %s signed: %s", spec.name, verdict.message)
        DECISIONS.labels(signer=signer, outcome="signed", reason=verdict.reason).inc()

    async def run(self) -> None:
        """A pass at start and whenever an open request changes, until cancelled; again after
        ``interval`` seconds when an action or the API failed (logged), and every
        :data:`RESYNC_SECONDS` anyway."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def woken() -> None:  # from a watch's thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
                loop.call_soon_threadsafe(wake.set)

        followers = [
            _Follower(profile.signer_name, self._requests, woken, self._config.interval)
            for profile, _ in self._signers
        ]
        try:
            for follower in followers:
                follower.start()
            while True:
                wake.clear()
                try:
                    failed = await asyncio.to_thread(self._failed_actions)
                except ClusterError as exc:
                    log.warning("agent certificate signer: %s", exc.message)
                    failed = 1
                delay = self._config.interval if failed else RESYNC_SECONDS
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
        finally:
            for follower in followers:
                follower.stop()

    def _failed_actions(self) -> int:
        return sum(failed for _, failed in self._passes())


def _open(state: CsrState) -> bool:
    """Whether the request still waits for a signer's decision or certificate."""
    return not (state.failed or state.issued or state.decision == "Denied")


class _Follower:
    """One signer's watch on a daemon thread (a blocked watch would hold up the interpreter's
    exit on the default executor's threads, which are joined): it wakes the loop on each change
    to an open request and after each listing, and lists and watches again after a failure."""

    def __init__(
        self, signer: str, requests: SignerRequests, wake: Callable[[], None], backoff: float
    ) -> None:
        self._watch = requests.watch(signer)
        self._wake = wake
        self._first_backoff = backoff
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._follow, name=f"csr-watch {signer}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._watch.close()

    def _follow(self) -> None:
        backoff = self._first_backoff
        while not self._stopped.is_set():
            began = time.monotonic()
            try:
                for change in self._watch.changes():
                    if change.kind == LISTED or (
                        change.kind != "DELETED" and change.state and _open(change.state)
                    ):
                        self._wake()
            except ClusterError as exc:
                log.warning("agent certificate signer: watch: %s", exc.message)
            # A watch that keeps failing soon after it began (e.g. refused) is retried ever
            # more slowly: each attempt lists, and wakes a pass.
            if time.monotonic() - began >= WATCH_BACKOFF_MAX:
                backoff = self._first_backoff
            self._stopped.wait(backoff)
            backoff = min(2 * backoff, WATCH_BACKOFF_MAX)


def _load_ca(cert: Path, key: Path, flags: str) -> signing.SigningCA:
    try:
        return signing.load_ca(cert.read_bytes(), key.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{flags}: {exc}") from exc
