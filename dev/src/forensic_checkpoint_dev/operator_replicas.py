"""Several operator replicas of one :class:`~forensic_checkpoint_dev.stack.LocalStack` with
leader election (``--leader-elect``), each a local process with the operator's identity, as the
chart's Deployment runs them: for the failover tests and ``benchmarks.operator_failover``."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import processes
from forensic_checkpoint_dev.stack import SYSTEM_NAMESPACE, LocalStack

LEASE = "forensic-checkpoint-operator"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NAMESPACE}/leases/{LEASE}"


@dataclass
class Replica:
    process: Any  # subprocess.Popen[bytes]
    health_port: int
    metrics_port: int

    @property
    def alive(self) -> bool:
        return bool(self.process.poll() is None)

    def leading(self) -> bool:
        """Its ``/readyz``: 200 on the leader only."""
        return self.alive and processes.http_ok(
            f"http://127.0.0.1:{self.health_port}/readyz", timeout=1
        )

    def metric(self, name: str) -> float | None:
        """One unlabelled sample of its Prometheus endpoint (``None`` when absent)."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        return None


@dataclass
class OperatorReplicas:
    stack: LocalStack
    namespaces: list[str]
    #: --leader-elect-lease-duration / -renew-deadline / -retry-period
    timings: tuple[float, float, float] = (15.0, 10.0, 2.0)
    replicas: list[Replica] = field(default_factory=list)

    def start(self, extra_args: tuple[str, ...] = ()) -> Replica:
        """One more replica (returns once its health port answers; it may stand by)."""
        duration, deadline, retry = self.timings
        self.stack.start_operator(
            self.namespaces,
            extra_args=(
                "--leader-elect",
                f"--leader-elect-lease-duration={duration}",
                f"--leader-elect-renew-deadline={deadline}",
                f"--leader-elect-retry-period={retry}",
                *extra_args,
            ),
        )
        proc, self.stack.operator_process = self.stack.operator_process, None
        replica = Replica(proc, self.stack.health_port, self.stack.metrics_port)
        self.replicas.append(replica)
        return replica

    def leader(self, timeout: float = 30.0) -> Replica:
        found: list[Replica] = []

        def one() -> bool:
            found[:] = [r for r in self.replicas if r.leading()]
            return len(found) == 1

        if not processes.wait_until(one, timeout, interval=0.1):
            raise AssertionError(f"not exactly one leader within {timeout} s: {found}")
        return found[0]

    def lease(self) -> dict[str, Any]:
        api = self.stack.cluster.admin_client()
        try:
            return dict(apiserver.request(api, "GET", LEASE_PATH)["spec"])
        finally:
            close(api)

    @staticmethod
    def kill(replica: Replica) -> float:
        """SIGKILL its process group; returns the kill's ``time.monotonic()``."""
        os.killpg(replica.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        replica.process.wait(10)
        return killed

    def stop(self) -> None:
        for replica in self.replicas:
            processes.stop_group(replica.process.pid, grace=5.0)
            replica.process.poll()
        self.replicas.clear()
