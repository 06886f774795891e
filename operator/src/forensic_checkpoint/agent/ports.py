"""What the agent needs from the API server, as Protocols: ``k8s``'s repositories satisfy them
(wired in :mod:`.runtime`), in-memory fakes in unit tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from forensic_checkpoint.api.conditions import Condition
from forensic_checkpoint.api.forensicnode import AgentStatus, ForensicNode, ReadinessCheck
from forensic_checkpoint.k8s.certificates import CsrOutcome
from forensic_checkpoint.k8s.nodes import NodeFacts


class NodeReader(Protocol):
    """The node's Node object (``k8s.nodes.Nodes``)."""

    def get(self, name: str) -> NodeFacts | None: ...


class ForensicNodeWriter(Protocol):
    """The node's ForensicNode, which the agent owns (``k8s.nodes.ForensicNodes``)."""

    def get(self, name: str) -> ForensicNode | None: ...

    def ensure(self, name: str, *, labels: Mapping[str, str], owner_uid: str = "") -> None: ...

    def set_agent(self, name: str, agent: AgentStatus) -> ForensicNode: ...

    def set_readiness(
        self,
        name: str,
        *,
        runtime: str,
        checks: Sequence[ReadinessCheck],
        conditions: Sequence[Condition],
    ) -> None: ...


class CsrClient(Protocol):
    """The agent's own CertificateSigningRequests (``k8s.certificates.CertificateSigningRequests``):
    its serving certificate in csr mode."""

    def create(
        self,
        name: str,
        request_pem: bytes,
        *,
        signer: str,
        usages: Sequence[str],
        expiration_seconds: int,
        labels: Mapping[str, str],
    ) -> None: ...

    def outcome(self, name: str) -> CsrOutcome: ...

    def delete(self, name: str) -> None: ...
