"""The shapes of the findings corpus's scenario table (``scenarios.py``) and their hash.

A scenario is one pod on the real node: what its container runs (a bash script in the corpus
image), how the runner knows it is ready, what the runner does from the host (hold a client
connection, catch a reverse shell, play a mining pool), and the ground truth an analyst expects:
which rules must fire, on which process, with which path or remote. The process is named by a
selector resolved from /proc just before the capture, never by the analyzer.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

Kind = Literal["benign", "attack"]

#: Replaced in scripts, payloads and expectations by the runner: the host's address as the pod
#: sees it (the CNI bridge's gateway), and the scenario's listener port on it.
HOST = "@HOST@"
PORT = "@PORT@"
#: Replaced by the address of the API server as the pod sees it (KUBERNETES_SERVICE_HOST:443).
API = "@API@"


@dataclass(frozen=True)
class Select:
    """One process of the container: ``comm`` equal and ``argv`` (joined by spaces) matching the
    regex. Exactly one process must match when the truth is built, or the scenario failed."""

    comm: str | None = None
    argv: str | None = None

    def matches(self, comm: str, argv: list[str]) -> bool:
        if self.comm is not None and comm != self.comm:
            return False
        return self.argv is None or re.search(self.argv, " ".join(argv)) is not None

    def __str__(self) -> str:
        parts = [f"comm={self.comm}"] if self.comm else []
        return " ".join([*parts, *([f"argv~/{self.argv}/"] if self.argv else [])])


@dataclass(frozen=True)
class Expect:
    """A finding that must be in the archive's analysis.

    ``rule`` may name alternatives ("drop-and-execute|exec-from-temp": either says it). ``path``
    must be the finding's evidence path (an executable, a file, a preloaded library, a memfd as
    ``memfd:<name>``); ``remote`` the peer of its socket (``@HOST@:4444``, ``@API@``). The truth
    builder checks both against the process's /proc (exe, fds, maps, environment, TCP)."""

    rule: str
    process: Select
    path: str | None = None
    remote: str | None = None

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(self.rule.split("|"))


@dataclass(frozen=True)
class Client:
    """A TCP connection the runner opens from the host to the pod once it is ready, sends
    ``send`` on, and holds open until the capture is over (a keep-alive client, an idle
    database session, a request that makes a web server spawn a shell)."""

    port: int
    send: str = ""
    #: bytes (hex) to send instead of ``send``, for binary protocols (postgres)
    send_hex: str = ""


@dataclass(frozen=True)
class Listener:
    """A TCP server the runner runs on the host (``@HOST@:port``) before the pod starts.
    ``shell``: sends ``send`` to each connection, then holds it (catches a reverse shell).
    ``stratum``: answers JSON-RPC ``mining.subscribe``/``mining.authorize`` like a pool."""

    port: int
    kind: Literal["shell", "stratum"] = "shell"
    send: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: Kind
    summary: str
    #: bash script of the container "app" (corpus image), run as ``bash -c``
    script: str
    #: bash command run in "app" with kubectl exec until it exits 0
    ready: str
    #: rules that must fire (attacks); benign scenarios expect nothing above low
    expect: tuple[Expect, ...] = ()
    #: rules that may fire as a true side effect of the attack without being its point
    #: (the nc of a relay is a network tool); never used on benign scenarios
    allow: tuple[str, ...] = ()
    clients: tuple[Client, ...] = ()
    listener: Listener | None = None
    #: a second container "sidecar" (same image), sharing the emptyDir at /shared with "app"
    sidecar: str | None = None
    #: an emptyDir mounted into "app" at this path (a database's data directory)
    volume: str | None = None
    #: /dev/shm is a memory-backed emptyDir (the usual way to get a larger one), which, unlike
    #: the runtime's own /dev/shm (nosuid, nodev, noexec), lets a binary run from it
    shm: bool = False
    #: the pod's ServiceAccount may read pods in its namespace, and the API server is reachable
    #: from the pod at KUBERNETES_SERVICE_HOST:443 (the runner routes the Service's ClusterIP to
    #: it, as kube-proxy would)
    api_access: bool = False
    #: which container is captured
    target: str = "app"
    #: seconds to wait after the clients before the truth and the capture (a spawned process)
    settle: float = 1.0
    tags: tuple[str, ...] = field(default=())

    def definition(self) -> dict[str, object]:
        return asdict(self)


def definition_hash(scenario: Scenario, *context: str) -> str:
    """Hash of the scenario's definition and of what else decides its archive (the image key,
    the CRIU version, the runner's format): a cached capture is reused only while it is equal."""
    blob = json.dumps([scenario.definition(), *context], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
