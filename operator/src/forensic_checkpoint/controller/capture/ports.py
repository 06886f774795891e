"""What the ForensicCheckpoint controller needs from the cluster and from the node agents, as
Protocols: ``k8s``'s repositories and :class:`~.agent_client.AgentClient` satisfy them at
start-up (:mod:`.runner`), in-memory fakes in the unit tests."""

from __future__ import annotations

from collections.abc import Awaitable, Collection
from typing import Protocol

from forensic_checkpoint.api.agent import (
    CaptureDigests,
    CaptureRequest,
    CaptureState,
    CaptureStatus,
    DeleteResult,
)
from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint, ForensicCheckpointStatus
from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.domain.capture.agents import AgentTarget
from forensic_checkpoint.domain.capture.targets import PodFacts


class CheckpointStatusWriter(Protocol):
    """Writes a ForensicCheckpoint's status (``k8s.checkpoints.ForensicCheckpoints``)."""

    def write_status(
        self,
        namespace: str,
        name: str,
        status: ForensicCheckpointStatus,
        *,
        with_custody: bool = False,
    ) -> None: ...


class CheckpointReader(Protocol):
    """Reads one ForensicCheckpoint (``k8s.checkpoints.ForensicCheckpoints``)."""

    def get(self, namespace: str, name: str) -> ForensicCheckpoint | None: ...


class ForensicNodeLister(Protocol):
    """Lists the ForensicNodes (``k8s.nodes.ForensicNodes``)."""

    def list(self) -> list[ForensicNode]: ...


class ForensicNodeReader(Protocol):
    """Reads a node's ForensicNode (``k8s.nodes.ForensicNodes``)."""

    def get(self, name: str) -> ForensicNode | None: ...


class PodReader(Protocol):
    """Reads the target pod's facts (``k8s.pods.Pods``)."""

    def get_facts(self, namespace: str, name: str) -> PodFacts | None: ...


class NodeAgents(Protocol):
    """The node agents' capture API (``controller.agent_client.AgentClient``). ``agent`` names
    the node whose agent must answer: the client verifies the peer as that node's agent and
    sends a token for that node's audience only."""

    async def submit(self, agent: AgentTarget, request: CaptureRequest) -> CaptureStatus: ...

    async def status(
        self,
        agent: AgentTarget,
        key: str,
        *,
        wait_while: Collection[CaptureState] = (),
        wait_seconds: float = 0.0,
    ) -> CaptureStatus | None: ...

    async def hold(self, agent: AgentTarget, key: str, *, hold: bool) -> CaptureStatus | None: ...

    async def delete(self, agent: AgentTarget, key: str) -> DeleteResult | None: ...


class KeptJobs(Protocol):
    """The node agents' list of their jobs (``controller.agent_client.AgentClient``): ``None``
    from an agent too old to list them."""

    async def digests(self, agent: AgentTarget) -> CaptureDigests | None: ...

    async def status(self, agent: AgentTarget, key: str) -> CaptureStatus | None: ...


class Stopped(Protocol):
    """An in-flight capture's stop flag (:class:`~.in_flight.Stopper`): falsy until the task is
    to stop; ``wait(timeout)`` returns once it is, or after ``timeout`` seconds."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[object]: ...
