"""The signer loop: every ``interval`` seconds, each request for the agents' signer that nobody
has finished gets the domain's verdict: approved and signed, or denied with the reason.

A poll of one field-selected list rather than a kopf handler: kopf would keep its progress in
annotations on the CSRs (a ``patch`` right on every CSR in the cluster), and an approval or a
signature that failed is simply tried again on the next pass. Requests approved by someone else
are signed only if they pass the same review; otherwise they are marked ``Failed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import Counter

from forensic_checkpoint.agent_identity import SIGNER_NAME
from forensic_checkpoint.controller.identity.config import AgentSignerConfig
from forensic_checkpoint.domain.identity import agent_certificates, signing
from forensic_checkpoint.domain.identity.csr_facts import parse_request
from forensic_checkpoint.errors import ClusterError, ConfigError
from forensic_checkpoint.k8s.certificates import CsrState
from forensic_checkpoint.k8s.nodes import NodeFacts

log = logging.getLogger(__name__)

DECISIONS = Counter(
    "forensic_checkpoint_operator_agent_certificates_total",
    "Agent serving certificate requests handled by the operator's signer, by outcome and reason.",
    ["outcome", "reason"],
)


class SignerRequests(Protocol):
    """``k8s.certificates.CertificateSigningRequests``."""

    def for_signer(self, signer: str) -> list[CsrState]: ...

    def approve(self, name: str, *, reason: str, message: str) -> None: ...

    def deny(self, name: str, *, reason: str, message: str) -> None: ...

    def issue(self, name: str, certificate_pem: bytes) -> None: ...

    def fail(self, name: str, *, reason: str, message: str) -> None: ...


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
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        try:
            self._ca = signing.load_ca(config.ca_file.read_bytes(), config.ca_key_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--agent-ca-file/--agent-ca-key-file: {exc}") from exc
        self._config = config
        self._requests = requests
        self._nodes = nodes
        self._clock = clock

    def run_once(self) -> int:
        """One pass over the open requests; returns how many it acted on."""
        acted = 0
        for state in self._requests.for_signer(SIGNER_NAME):
            if state.failed or state.issued or state.decision == "Denied":
                continue
            try:
                self._handle(state)
            except ClusterError as exc:  # e.g. deleted or changed meanwhile: next pass
                log.warning("agent certificate request %s: %s", state.spec.name, exc.message)
                continue
            acted += 1
        return acted

    def _handle(self, state: CsrState) -> None:
        spec = state.spec
        facts = parse_request(spec.request)
        verdict = agent_certificates.review(
            spec,
            facts,
            agent_user=self._config.agent_user,
            node_exists=lambda node: self._nodes.get(node) is not None,
        )
        if not verdict.approved:
            if state.decision == "Approved":  # by someone else: still not signed
                self._requests.fail(spec.name, reason=verdict.reason, message=verdict.message)
                outcome = "failed"
            else:
                self._requests.deny(spec.name, reason=verdict.reason, message=verdict.message)
                outcome = "denied"
            log.warning("agent certificate request %s %s: %s", spec.name, outcome, verdict.message)
            DECISIONS.labels(outcome=outcome, reason=verdict.reason).inc()
            return
        if state.decision == "":
            self._requests.approve(spec.name, reason=verdict.reason, message=verdict.message)
        if facts.request is None:  # never: an approved verdict has read the request
            return
        certificate = signing.issue(
            facts.request,
            server_name=verdict.server_name,
            ca=self._ca,
            now=self._clock(),
            valid_for=signing.lifetime(spec.expiration_seconds, self._config.max_seconds),
        )
        self._requests.issue(spec.name, certificate)
        log.info("agent certificate request %s signed: %s", spec.name, verdict.message)
        DECISIONS.labels(outcome="signed", reason=verdict.reason).inc()

    async def run(self) -> None:
        """Pass after pass until cancelled; an API outage is logged and waited out."""
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except ClusterError as exc:
                log.warning("agent certificate signer: %s", exc.message)
            await asyncio.sleep(self._config.interval)
