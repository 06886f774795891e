"""The signer loop: every ``interval`` seconds, each request for one of the agents' signers
(serving, kubelet client: a :class:`~forensic_checkpoint.domain.identity.profiles.Profile` and a
CA each, those configured) that nobody has finished gets the domain's verdict: approved and
signed, or denied with the reason. A kubelet client certificate is signed only once its node's
agent user may create ``nodes/checkpoint`` on that node alone (``k8s.rbac``).

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
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter

from forensic_checkpoint.controller.identity.config import AgentSignerConfig
from forensic_checkpoint.domain.identity import agent_certificates, signing
from forensic_checkpoint.domain.identity.csr_facts import parse_request
from forensic_checkpoint.domain.identity.profiles import KUBELET_CLIENT, SERVING, Profile
from forensic_checkpoint.errors import ClusterError, ConfigError
from forensic_checkpoint.k8s.certificates import CsrState
from forensic_checkpoint.k8s.nodes import NodeFacts

log = logging.getLogger(__name__)

DECISIONS = Counter(
    "forensic_checkpoint_operator_agent_certificates_total",
    "Agent certificate requests handled by the operator's signers, by signer, outcome and reason.",
    ["signer", "outcome", "reason"],
)


class SignerRequests(Protocol):
    """``k8s.certificates.CertificateSigningRequests``."""

    def for_signer(self, signer: str) -> list[CsrState]: ...

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
        acted = 0
        for profile, ca in self._signers:
            acted += self._pass(profile, ca)
        return acted

    def _pass(self, profile: Profile, ca: signing.SigningCA) -> int:
        acted = 0
        for state in self._requests.for_signer(profile.signer_name):
            if state.failed or state.issued or state.decision == "Denied":
                continue
            try:
                self._handle(state, profile, ca)
            except ClusterError as exc:  # e.g. deleted or changed meanwhile: next pass
                log.warning("agent certificate request %s: %s", state.spec.name, exc.message)
                continue
            acted += 1
        return acted

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
        """Pass after pass until cancelled; an API outage is logged and waited out."""
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except ClusterError as exc:
                log.warning("agent certificate signer: %s", exc.message)
            await asyncio.sleep(self._config.interval)


def _load_ca(cert: Path, key: Path, flags: str) -> signing.SigningCA:
    try:
        return signing.load_ca(cert.read_bytes(), key.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{flags}: {exc}") from exc
