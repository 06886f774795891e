"""The failure table: which kubelet and runtime answers mean which condition reason (data).

The kubelet answers every runtime-side failure with the same 500 ``checkpointing of ns/pod/ctr
failed (<gRPC error>)``, and for CRIU failures the runtimes only say ``criu failed: type NOTIFY
errno 0`` plus the path of CRIU's ``dump.log``. The real cause (an established TCP connection, a
big deleted file, a ptraced task) is only in that log. So the table has two stages: the status
and body pick a row of :data:`KUBELET_RULES`; a body that reports a CRIU failure is refined by
:data:`CRIU_LOG_RULES` over the log text. :data:`TRANSPORT_RULES` covers calls the kubelet never
answered.

Each row names the text it matches and where that text comes from, so a new runtime message is
one row here, and ``docs/capture-readiness.md`` can list them. The one classifier that reads
this table is :func:`forensic_checkpoint.domain.failures.classify.classify_capture_failure`; the
agent's captures and its readiness probe both go through it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from forensic_checkpoint.domain.failures.model import (
    FailureReason,
    Fields,
    Rule,
    TransportFailure,
    TransportRule,
)

_CRIU_CONF = "/etc/criu/runc.conf"

_RBAC = (
    'a ClusterRole rule `apiGroups: [""], resources: ["nodes/checkpoint"], verbs: ["create"]` '
    "bound to the identity the agent presents to the kubelet"
)

_CRIU_FAILED_FIX = (
    "The runtime reports only that CRIU failed; the cause is in CRIU's log at {log_path} on the "
    "node. Let the agent read it (mount that directory read-only) to get the precise reason. The "
    "usual causes are an established TCP connection (`tcp-established` in " + _CRIU_CONF + "), a "
    "deleted open file over 1 MiB (`ghost-limit`) and a ptraced process."
)


def _ghost_fields(groups: Fields) -> dict[str, str]:
    """Suggest a ghost-limit with headroom: twice the file, rounded up to whole MiB."""
    size = int(groups["size"])
    mib = 1 << 20
    suggested = max(2 * size, mib)
    suggested = -(-suggested // mib) * mib
    return {"suggested_limit": str(suggested), "suggested_mib": str(suggested // mib)}


def _forbidden_fields(groups: Fields) -> dict[str, str]:
    user = groups.get("user") or ""
    return {"who": f"user {user}" if user else "the caller"}


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.MULTILINE)


#: Stage 1: the kubelet's HTTP status and body. Evaluated top to bottom, first match wins.
KUBELET_RULES: tuple[Rule, ...] = (
    Rule(
        reason=FailureReason.KUBELET_UNAUTHORIZED,
        statuses=frozenset({401}),
        pattern=_rx(r""),
        source="kubelet server.go InstallAuthFilter: 401 `Unauthorized`",
        message="The kubelet did not accept the agent's credentials (401 Unauthorized).",
        remediation=(
            "For a ServiceAccount token the kubelet needs webhook token authentication "
            "(KubeletConfiguration `authentication.webhook.enabled: true`); for a client "
            "certificate it must be signed by the kubelet's `authentication.x509.clientCAFile`."
        ),
    ),
    Rule(
        reason=FailureReason.KUBELET_FORBIDDEN,
        statuses=frozenset({403}),
        pattern=_rx(r"(?:.*?user=(?P<user>[^,)]*))?"),
        source="kubelet server.go auth filter: 403 `Forbidden (user=..., verb=create, "
        "resource=nodes, subresource(s)=[checkpoint])`",
        message="The kubelet refused {who}: it may not create nodes/checkpoint on this node.",
        remediation=(
            "Grant " + _RBAC + ". The kubelet caches a denial for "
            "`authorization.webhook.cacheUnauthorizedTTL` (30 s by default) before it asks again."
        ),
        derive=_forbidden_fields,
    ),
    Rule(
        reason=FailureReason.KUBELET_AUTHORIZATION_ERROR,
        statuses=frozenset({500}),
        pattern=_rx(r"^Authorization error \(user=(?P<user>[^,)]*)"),
        source="kubelet server.go: 500 `Authorization error (user=...)` when the "
        "SubjectAccessReview call itself failed",
        message="The kubelet could not ask the API server whether user {user} may checkpoint.",
        remediation="Check the kubelet's connection to the API server; the call can be retried.",
        retryable=True,
    ),
    Rule(
        reason=FailureReason.CHECKPOINTING_DISABLED,
        statuses=frozenset({404}),
        pattern=_rx(r"^404 page not found"),
        source="kubelet server.go: the /checkpoint route is only installed with the "
        "ContainerCheckpoint feature gate; Go's http.NotFound body",
        message=(
            "The kubelet has no /checkpoint endpoint: its ContainerCheckpoint feature gate is "
            "off (or the kubelet is older than 1.25)."
        ),
        remediation=(
            "Enable the kubelet feature gate `ContainerCheckpoint` (KubeletConfiguration "
            "`featureGates: {{ContainerCheckpoint: true}}`, on by default since Kubernetes 1.30) "
            "and restart the kubelet."
        ),
    ),
    Rule(
        reason=FailureReason.CONTAINER_NOT_FOUND,
        statuses=frozenset({404}),
        pattern=_rx(r"^(?:pod does not exist|container (?P<name>\S+) does not exist)"),
        source="kubelet server.go checkpoint handler: `pod does not exist`, "
        "`container <name> does not exist`",
        message=(
            "The kubelet on this node knows no such pod or container (it was deleted, moved "
            "to another node, or the name is wrong)."
        ),
        remediation="Check the pod's node and the container name in the ForensicCheckpoint.",
    ),
    Rule(
        reason=FailureReason.KUBELET_ERROR,
        statuses=frozenset({404}),
        pattern=_rx(r"cannot parse value of timeout parameter"),
        source="kubelet server.go: an unparsable `timeout` query answers 404",
        message="The kubelet rejected the request's timeout parameter.",
        remediation="This is a bug in the caller: the timeout must be a whole number of seconds.",
    ),
    Rule(
        reason=FailureReason.CHECKPOINTING_DISABLED,
        statuses=frozenset({500}),
        pattern=_rx(r"criu support is disabled by configuration"),
        source="containerd internal/cri/server/container_checkpoint_linux.go (recorded, 2.3.4)",
        message="containerd has checkpointing switched off (`enable_criu = false`).",
        remediation=(
            'Set `enable_criu = true` (the default) in `[plugins."io.containerd.cri.v1.runtime"]` '
            "of /etc/containerd/config.toml and restart containerd."
        ),
    ),
    Rule(
        reason=FailureReason.CHECKPOINTING_DISABLED,
        statuses=frozenset({500}),
        pattern=_rx(r"checkpoint/restore support not available"),
        source="CRI-O server/container_checkpoint.go (recorded, 1.26.4)",
        message="CRI-O has checkpoint/restore support switched off, or cannot find `criu`.",
        remediation=(
            "Set `enable_criu_support = true` in `[crio.runtime]` (CRI-O before 2026; the 1.26 "
            'default is false) or `container_level_enabled = "checkpoint_only"` in '
            "`[crio.checkpoint_restore]` (newer CRI-O), make sure `criu` is in CRI-O's $PATH "
            "(newer CRI-O switches support off without it), and restart CRI-O."
        ),
    ),
    Rule(
        reason=FailureReason.CRIU_MISSING,
        statuses=frozenset({500}),
        pattern=_rx(r"criu binary not found in shim path or system PATH"),
        source="containerd internal/cri/server/container_checkpoint_linux.go (recorded, 2.3.4)",
        message="containerd cannot find the `criu` binary.",
        remediation=(
            "Install CRIU (>= 3.16) in the PATH of containerd or of its runc shim and restart "
            "containerd: it checks for CRIU once per process lifetime and caches the answer."
        ),
    ),
    Rule(
        reason=FailureReason.CONTAINER_NOT_RUNNING,
        statuses=frozenset({500}),
        pattern=_rx(
            r"is in (?P<state>CONTAINER_\w+) state\. only CONTAINER_RUNNING containers can be "
            r"checkpointed|container \S+ is not running|container (?P<name>\S+) not found"
        ),
        source="containerd container_checkpoint_linux.go, CRI-O internal/lib/checkpoint.go "
        "(both recorded); kubelet findContainer `container <name> not found`",
        message=(
            "The container is not running (it exited, was never started, or is between "
            "restarts); only running containers can be checkpointed."
        ),
        remediation=(
            "Nothing to change on the node. Capture while the container runs; for a "
            "crash-looping container the window between restarts is short."
        ),
    ),
    Rule(
        reason=FailureReason.RUNTIME_UNSUPPORTED,
        statuses=frozenset({500}),
        pattern=_rx(r"code = Unimplemented"),
        source="CRI gRPC status Unimplemented, e.g. `unknown method CheckpointContainer` "
        "(kubernetes/kubernetes#113621)",
        message="The container runtime does not implement the CRI CheckpointContainer call.",
        remediation=(
            "Use a runtime that does: CRI-O >= 1.25 with checkpoint support enabled, or "
            "containerd >= 2.0."
        ),
    ),
    Rule(
        reason=FailureReason.TIMEOUT,
        statuses=frozenset({500}),
        pattern=_rx(r"code = DeadlineExceeded"),
        source="CRI gRPC status DeadlineExceeded: the kubelet's runtime request timeout or the "
        "request's `timeout` ran out",
        message="The runtime did not finish the checkpoint within the timeout.",
        remediation=(
            "Set the ForensicCheckpoint's timeoutSeconds above the kubelet's "
            "`runtimeRequestTimeout` (2 min by default; a smaller value is raised to it, so it "
            "has no effect); large memory takes longer to write."
        ),
        retryable=True,
    ),
    Rule(
        reason=FailureReason.RUNTIME_ERROR,
        statuses=frozenset({500}),
        pattern=_rx(
            r"cannot pause a paused container|ctrd-checkpoint/status: no such file or directory"
        ),
        source="containerd transient errors retried by checkpoint-restore-operator "
        "(internal/controller/checkpoint_creator.go isTransientCheckpointErrorText)",
        message="containerd reported a transient checkpoint error.",
        remediation="Retry; containerd reports this while another checkpoint of it is running.",
        retryable=True,
    ),
    Rule(
        reason=FailureReason.RUNTIME_ERROR,
        statuses=frozenset({500}),
        pattern=_rx(r"criu failed: type NOTIFY errno \d+"),
        source="runc `criu failed: type NOTIFY errno 0` inside the containerd shim / CRI-O "
        "error (recorded, both runtimes)",
        message="CRIU failed to dump the container; the runtime's error names no cause.",
        remediation=_CRIU_FAILED_FIX,
        refine_with_criu_log=True,
    ),
)

#: Stage 2: CRIU's dump.log, for bodies that only say that CRIU failed. First match wins, so the
#: specific error lines come before the broader ones.
CRIU_LOG_RULES: tuple[Rule, ...] = (
    Rule(
        reason=FailureReason.ESTABLISHED_TCP,
        pattern=_rx(r"Connected TCP socket, consider using --tcp-established option"),
        source="CRIU criu/sk-inet.c (recorded in containerd and CRI-O dump.log)",
        message=(
            "A process in {container_ref} holds a connected TCP socket, and CRIU on this node "
            "is not configured to dump established connections."
        ),
        remediation=(
            "Add `tcp-established` to " + _CRIU_CONF + " on the node (the agent's "
            "`criuConfig.enabled` setting writes it). The CRI has no per-request switch for it. "
            "The workload keeps running; its connections pause only while CRIU dumps."
        ),
    ),
    Rule(
        reason=FailureReason.IN_FLIGHT_TCP,
        pattern=_rx(r"In-flight connection \(l\) for (?P<ino>[0-9a-f]+)"),
        source="CRIU criu/sk-inet.c (source text; not recorded)",
        message=(
            "A listening socket in {container_ref} has connections that are not yet accepted "
            "(in flight); CRIU refuses to dump them by default."
        ),
        remediation=(
            "Add `skip-in-flight` to " + _CRIU_CONF + ": the half-open connections are left "
            "out of the checkpoint and stay with the running workload."
        ),
    ),
    Rule(
        reason=FailureReason.FILE_LOCKS,
        pattern=_rx(r"Some file locks are hold by dumping tasks"),
        source="CRIU criu/file-lock.c (source text; not recorded). containerd's CRI passes no "
        "--file-locks to runc, CRI-O does",
        message="A process in {container_ref} holds a file lock (flock or POSIX lock).",
        remediation=(
            "Add `file-locks` to " + _CRIU_CONF + " (the agent's `criuConfig.fileLocks`): the "
            "lock state is recorded and the locks stay held by the running workload."
        ),
    ),
    Rule(
        reason=FailureReason.GHOST_FILE_TOO_LARGE,
        pattern=_rx(r"Can't dump ghost file (?P<path>.+?) of (?P<size>\d+) size, increase limit"),
        source="CRIU criu/files-reg.c (recorded in containerd and CRI-O dump.log)",
        message=(
            "A process in {container_ref} keeps the deleted file {path} open ({size} bytes), "
            "larger than CRIU's ghost-limit (1 MiB by default)."
        ),
        remediation=(
            "Set `ghost-limit {suggested_limit}` ({suggested_mib} MiB) or more in "
            + _CRIU_CONF
            + " (the agent's `criuConfig.ghostLimitBytes`). The file's whole content then goes "
            "into the archive, which is often the evidence itself (a dropped-and-deleted binary)."
        ),
        derive=_ghost_fields,
    ),
    Rule(
        reason=FailureReason.TRACED_TASK,
        pattern=_rx(
            r"Unable to interrupt task: (?P<pid>\d+) \(Operation not permitted\)"
            r"(?:\n.*?zombie \d+ \(comm (?P<comm>[^)]*)\))?"
        ),
        source="compel infect.c + CRIU criu/seize.c, then `Timeout reached` (recorded, "
        "containerd and CRI-O, tracer inside the container and strace from the node)",
        message=(
            "Process {pid}{comm_part} in {container_ref} is already being traced (ptrace) by "
            "another process, so CRIU cannot seize it; CRIU gave up after its freeze timeout."
        ),
        remediation=(
            "No CRIU option helps. Find the tracer (`TracerPid:` in /proc/<pid>/status of the "
            "container's processes) and end it (strace, gdb, a debugger session), then capture "
            "again. A tracer inside the container is itself a finding: anti-debugging or "
            "process injection."
        ),
        derive=lambda g: {"comm_part": f" ({g['comm']})" if g.get("comm") else ""},
    ),
    Rule(
        reason=FailureReason.MEMFD_SECRET,
        pattern=_rx(r"/secretmem\b"),
        source="Linux mm/secretmem.c names memfd_secret files `/secretmem`; CRIU cannot dump "
        "them (criu#2188, open). No failing dump.log recorded",
        message=(
            "A process in {container_ref} maps memfd_secret memory, which no other process "
            "(CRIU included) can read; CRIU cannot dump it."
        ),
        remediation=(
            "No configuration makes secret memory dumpable. Treat the use of memfd_secret as a "
            "finding (it hides memory from forensics) and collect other evidence: logs, the "
            "filesystem diff, network flows."
        ),
    ),
)

#: Failures without a kubelet answer, by what the caller saw.
TRANSPORT_RULES: Mapping[TransportFailure, TransportRule] = {
    TransportFailure.TIMEOUT: TransportRule(
        FailureReason.TIMEOUT,
        "The kubelet did not answer the checkpoint call in time.",
        "Check the runtime (CRIU may wait on a frozen task) and that the agent's "
        "--kubelet-runtime-request-timeout is the kubelet's runtimeRequestTimeout; a "
        "timeoutSeconds above that lengthens the dump's deadline.",
        True,
    ),
    TransportFailure.TLS: TransportRule(
        FailureReason.KUBELET_TLS_ERROR,
        "The TLS handshake with the kubelet failed (usually: its serving certificate could not "
        "be verified).",
        "Give the agent the CA that signed the kubelet's serving certificate (kubelet "
        "`serverTLSBootstrap: true` makes the cluster CA sign it), or the node's own "
        "/var/lib/kubelet/pki/kubelet.crt for a self-signed one.",
        False,
    ),
    TransportFailure.REFUSED: TransportRule(
        FailureReason.KUBELET_UNREACHABLE,
        "The kubelet could not be reached: nothing accepted the connection, or it was cut.",
        "Check the kubelet address and port the agent uses (the node's status.daemonEndpoints"
        ".kubeletEndpoint.port, 10250 by default) and that the kubelet runs.",
        True,
    ),
}
