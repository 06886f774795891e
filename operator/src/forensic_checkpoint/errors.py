"""The project's one error hierarchy.

Every layer raises these, never a library's own exception: the boundaries (the CLI, the kopf
handlers, the agent's HTTP handlers) translate them into exit codes, condition reasons and HTTP
statuses. The original exception is kept as ``__cause__`` (``raise ... from exc``). Messages are
one line, safe to log: they never carry memory contents or secret values.
"""

from __future__ import annotations

from typing import Any


class ForensicCheckpointError(Exception):
    """Base of every error this project raises on purpose."""

    #: A CamelCase reason, used as a Kubernetes condition reason and a metrics label.
    reason: str = "Error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


# --- Offline analysis -----------------------------------------------------------------------


class ArchiveError(ForensicCheckpointError):
    """The archive cannot be read as a checkpoint at all (wrong format, truncated, hostile)."""

    reason = "InvalidArchive"


class UnsafeArchiveError(ArchiveError):
    """The archive tries something a checkpoint never does (traversal, device files, bombs)."""

    reason = "UnsafeArchive"


class ArchiveLimitError(ArchiveError):
    """The archive exceeds a safety bound (entry count, expanded size, nesting)."""

    reason = "ArchiveLimitExceeded"


class ImageError(ForensicCheckpointError):
    """One CRIU image is malformed; analysis goes on without it and reports a warning."""

    reason = "InvalidImage"


class MemberNotFoundError(ArchiveError):
    """The archive is fine but does not hold the file or member asked for."""

    reason = "NotInArchive"


class ReportExportError(ForensicCheckpointError):
    """A report export (Timesketch, STIX, HTML) would not be accepted by the tool it is for."""

    reason = "ReportExportInvalid"


class EncryptedArchiveError(ArchiveError):
    """The archive is age-encrypted and no (matching) identity was given."""

    reason = "EncryptedArchive"


# --- Capture (agent and kubelet) ------------------------------------------------------------


class CaptureError(ForensicCheckpointError):
    """A checkpoint could not be taken. ``reason`` says why, in condition-reason form."""

    reason = "CaptureFailed"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        status_code: int | None = None,
        retryable: bool = False,
        remediation: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.status_code = status_code
        self.retryable = retryable
        self.remediation = remediation


class KubeletError(CaptureError):
    """The kubelet answered the checkpoint call with an error, or could not be reached."""

    reason = "KubeletError"


class KubeletRuntimeError(KubeletError):
    """The runtime behind the kubelet failed the checkpoint; ``excerpt`` holds CRIU log lines."""

    reason = "RuntimeError"

    def __init__(self, message: str, *, excerpt: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.excerpt = excerpt


class AgentQueueFull(ForensicCheckpointError):
    """The agent holds as many waiting captures as it may: the request was not recorded; the
    agent answers 503 and the operator asks again."""

    reason = "AgentQueueFull"


class AgentError(ForensicCheckpointError):
    """The node agent could not be reached or answered with an error."""

    reason = "AgentUnavailable"

    def __init__(
        self, message: str, *, reason: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.status_code = status_code


# --- Cluster and configuration --------------------------------------------------------------


class ClusterError(ForensicCheckpointError):
    """The Kubernetes API refused or failed a request."""

    reason = "ClusterError"

    def __init__(
        self, message: str, *, reason: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.status_code = status_code


class NotFoundError(ClusterError):
    reason = "NotFound"


class ConflictError(ClusterError):
    reason = "Conflict"


class ConfigError(ForensicCheckpointError):
    """A setting, flag or input file is invalid; the message names it."""

    reason = "InvalidConfig"


class ToolError(ForensicCheckpointError):
    """An external tool (etcd, kube-apiserver, checkpointctl, ...) is missing or failed."""

    reason = "ToolFailed"


# --- Evidence (export, encryption, custody) -------------------------------------------------


class ExportError(ForensicCheckpointError):
    """Off-node export failed (object store unreachable, refused, or an upload gave up)."""

    reason = "ExportFailed"


class IntegrityError(ForensicCheckpointError):
    """Bytes or a custody chain do not match what was recorded: evidence may be altered."""

    reason = "IntegrityMismatch"
