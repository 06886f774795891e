"""The agent's readiness rounds: gather the node's facts, let ``domain.readiness`` judge them,
and write ``status.checks`` and the ``Ready`` condition of the node's ForensicNode.

One round costs one kubelet call: a checkpoint of a pod that cannot exist
(``domain.readiness.PROBE_PATH``). The kubelet authenticates and authorises it exactly like a
real capture, and its 404 body tells "gate off" from "handler ran", so no workload is touched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from forensic_checkpoint.agent.jobs import utcnow
from forensic_checkpoint.agent.kubelet import outcomes
from forensic_checkpoint.agent.kubelet.client import KubeletClient
from forensic_checkpoint.agent.ports import ForensicNodeWriter, NodeReader
from forensic_checkpoint.domain.failures.model import TransportFailure
from forensic_checkpoint.domain.readiness import (
    PROBE_PATH,
    CriuConfigObservation,
    KubeletProbe,
    NodeProbe,
    Readiness,
    evaluate,
    to_status,
)
from forensic_checkpoint.errors import ClusterError, KubeletError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0

_TRANSPORT = {
    outcomes.KUBELET_TLS_ERROR: TransportFailure.TLS,
    outcomes.KUBELET_UNREACHABLE: TransportFailure.REFUSED,
    outcomes.TIMEOUT: TransportFailure.TIMEOUT,
}


def probe_kubelet(kubelet: KubeletClient) -> KubeletProbe:
    verified = not kubelet.auth.insecure_skip_tls_verify
    try:
        status, body = kubelet.probe(PROBE_PATH)
    except KubeletError as exc:
        transport = _TRANSPORT.get(exc.reason, TransportFailure.REFUSED)
        return KubeletProbe(status_code=None, body=exc.message, transport=transport)
    return KubeletProbe(status_code=status, body=body, tls_verified=verified)


class ReadinessProber:
    """Runs a round at start and then every ``interval`` seconds in a daemon thread."""

    def __init__(
        self,
        nodes: NodeReader,
        forensic_nodes: ForensicNodeWriter,
        node_name: str,
        kubelet: KubeletClient,
        *,
        interval: float = DEFAULT_INTERVAL,
        criu_config: Callable[[], CriuConfigObservation | None] | None = None,
    ) -> None:
        self.nodes = nodes
        self.forensic_nodes = forensic_nodes
        self.node_name = node_name
        self.kubelet = kubelet
        self.interval = interval
        self._criu_config = criu_config
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="readiness", daemon=True)
        self.last: Readiness | None = None

    def gather(self) -> NodeProbe:
        node = self.nodes.get(self.node_name)
        info = node.node_info if node is not None else {}
        return NodeProbe(
            container_runtime_version=info.get("containerRuntimeVersion"),
            kubelet_version=info.get("kubeletVersion"),
            kubelet=probe_kubelet(self.kubelet),
            criu_config=self._criu_config() if self._criu_config else None,
        )

    def round(self) -> Readiness:
        probe = self.gather()
        readiness = evaluate(probe)
        now = utcnow()
        current = self.forensic_nodes.get(self.node_name)
        conditions = current.status.conditions if current and current.status else []
        checks, updated = to_status(readiness, conditions, now=now)
        self.forensic_nodes.set_readiness(
            self.node_name,
            runtime=probe.container_runtime_version or "",
            checks=checks,
            conditions=updated,
        )
        if self.last is None or (self.last.status, self.last.reason) != (
            readiness.status,
            readiness.reason,
        ):
            log.info(
                "node %s readiness: %s %s: %s",
                self.node_name,
                readiness.status,
                readiness.reason,
                readiness.message,
            )
        self.last = readiness
        return readiness

    def start(self) -> None:
        """One round now, before the caller announces the agent (so nobody reads the checks a
        previous agent left), then one every ``interval`` seconds in the background."""
        self._guarded_round()
        self._thread.start()

    def probe_now(self) -> None:
        """One round at once (the kubelet client certificate just arrived: the last round's
        KubeletTLSError is stale, and the operator refuses captures on it)."""
        self._guarded_round()

    def _guarded_round(self) -> None:
        try:
            self.round()
        except ClusterError as exc:
            log.warning("readiness round for %s failed: %s", self.node_name, exc.message)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._guarded_round()
