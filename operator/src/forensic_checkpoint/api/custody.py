"""Chain-of-custody entries as the ForensicCheckpoint status stores them (``status.custody[]``).

An entry is written once and never changed: each carries ``prevHash`` (the previous entry's
``hash``, or the chain anchor for the first) and ``hash`` (sha256 over the entry's canonical JSON
without ``hash``). :mod:`forensic_checkpoint.domain.evidence.custody` builds and verifies
chains; this module only holds the shapes, so that the CR status model can embed them.

There is one chain per ForensicCheckpoint (``status.custody``); its subject, which the anchor
binds it to, is the CR's uid. For the CRD: declare ``status.custody`` with
:data:`CUSTODY_LIST_SCHEMA` and the root rule :data:`CUSTODY_PRESENCE_RULE` so the API server
itself refuses to edit, replace or drop an entry or the whole chain (map list keyed on
``sequence``, entries immutable once written).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, field_validator

from forensic_checkpoint.api.base import KubeModel, Sha256, ShortText

#: Upper bound of ``status.custody``, one chain for all containers of a CR: each container's life
#: has a handful of entries (capture, export, verification, deletion), and a CR has up to 16.
MAX_CUSTODY_ENTRIES = 128

#: Schema hints for the ``status.custody`` list field (``json_schema_extra``): entries correlate
#: by ``sequence`` so each can be declared immutable (:data:`CUSTODY_ENTRY_SCHEMA`), every old
#: sequence must still be there (an entry cannot be swapped for one with a new ``sequence``,
#: which would escape that correlation), and sequences are ``0..n-1`` (appending takes the next).
#: The cost is bounded by ``maxItems`` (:data:`MAX_CUSTODY_ENTRIES`): at most 128 x 128 integer
#: comparisons.
CUSTODY_LIST_SCHEMA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["sequence"],
    "x-kubernetes-validations": [
        {
            "rule": (
                "self.size() >= oldSelf.size() && "
                "oldSelf.all(o, self.exists(n, n.sequence == o.sequence))"
            ),
            "message": "custody entries cannot be removed or replaced: the chain is append-only",
        },
        {
            "rule": "self.all(e, e.sequence < self.size())",
            "message": "custody sequences are 0..n-1: a new entry takes the next sequence",
        },
    ],
}
#: Schema hint for one entry (``json_schema_extra`` of :class:`CustodyEntry` in the CRD).
CUSTODY_ENTRY_SCHEMA: dict[str, Any] = {
    "x-kubernetes-validations": [
        {"rule": "self == oldSelf", "message": "a custody entry is immutable once written"}
    ]
}
#: A rule on the whole object (the CRD's root, ``CrdInfo.validations``): a transition rule on
#: ``status.custody`` does not run when the field (or ``status``) is gone from the update, so
#: removing the whole chain is refused here.
CUSTODY_PRESENCE_RULE: dict[str, str] = {
    "rule": (
        "!has(oldSelf.status) || !has(oldSelf.status.custody) || "
        "oldSelf.status.custody.size() == 0 || (has(self.status) && has(self.status.custody))"
    ),
    "message": "status.custody cannot be removed once written: the chain is append-only",
}


class CustodyAction(StrEnum):
    REQUESTED = "Requested"
    CAPTURED = "Captured"
    EXPORTED = "Exported"
    VERIFIED = "Verified"
    DELETED = "Deleted"


class ActorKind(StrEnum):
    """Who acted: a Kubernetes user (from the CR's creation), an alert, or our own components."""

    USER = "User"
    SERVICE_ACCOUNT = "ServiceAccount"
    ALERT = "Alert"
    OPERATOR = "Operator"
    AGENT = "Agent"
    ANALYST = "Analyst"


class Actor(KubeModel):
    kind: ActorKind
    """User, ServiceAccount, Alert, Operator, Agent or Analyst."""
    name: Annotated[str, Field(min_length=1, max_length=512)]
    """User name, system:serviceaccount:NS:NAME, alert source + fingerprint, node name, ..."""
    uid: Annotated[str, Field(max_length=128)] | None = None
    """The user's uid as the API server authenticated it, when known."""


class KubeletResponse(KubeModel):
    """What the kubelet answered to ``POST /checkpoint/...`` (status code and a short text)."""

    status_code: int = Field(ge=100, le=599)
    """The HTTP status code."""
    message: ShortText = ""
    """items[0] (the archive path) on success, the error text otherwise; truncated."""


class CustodyEntry(KubeModel):
    """One immutable record in the chain; see the module docstring for the hash rules."""

    sequence: int = Field(ge=0, lt=MAX_CUSTODY_ENTRIES)
    """The entry's place in the chain, 0..n-1."""
    action: CustodyAction
    """Requested, Captured, Exported, Verified or Deleted."""
    at: datetime
    """When it happened, UTC; hashed at microsecond precision."""
    actor: Actor
    """Who acted."""
    container: Annotated[str, Field(max_length=63)] | None = None
    """The container the entry is about; unset for entries about the whole CR (Requested)."""
    node: Annotated[str, Field(max_length=253)] | None = None
    """The node the evidence was on."""
    kubelet: KubeletResponse | None = None
    """What the kubelet answered (Captured)."""
    sha256: Sha256 | None = None
    """sha256 of the checkpoint archive as captured (the plaintext tar)."""
    size_bytes: int | None = Field(default=None, ge=0)
    """The archive's size in bytes."""
    url: Annotated[str, Field(max_length=2048)] | None = None
    """s3://bucket/key of an exported object (archive, possibly age-encrypted)."""
    object_sha256: Sha256 | None = None
    """sha256 of the object's bytes (differs from sha256 when the object is encrypted)."""
    encrypted: bool | None = None
    """Whether the exported object is age-encrypted."""
    reason: Annotated[str, Field(max_length=128)] | None = None
    """A CamelCase reason, e.g. RetentionMaxAge for a deletion."""
    message: ShortText | None = None
    """One line about the entry."""
    prev_hash: Sha256
    """The previous entry's hash (the chain's anchor for the first)."""
    hash: Sha256
    """sha256 over this entry's canonical form and prevHash (docs/evidence.md)."""

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # A naive time would hash differently on machines in other zones: refuse it.
        if value.tzinfo is None:
            raise ValueError("custody times must carry a time zone")
        return value.astimezone(UTC)


class ExportRecord(KubeModel):
    """Where one archive went off the node; ``sha256`` is of the object's bytes as stored."""

    url: Annotated[str, Field(max_length=2048)]
    sha256: Sha256
    archive_sha256: Sha256
    size_bytes: int = Field(ge=0)
    encrypted: bool
    exported_at: datetime
    report_url: Annotated[str, Field(max_length=2048)] | None = None
    manifest_url: Annotated[str, Field(max_length=2048)] | None = None


class EvidenceTarget(KubeModel):
    """What was captured, as the manifest and object keys name it."""

    namespace: str
    pod: str
    container: str
    capture_key: str
    node: str = ""
    checkpoint_name: str = ""
    #: The ForensicCheckpoint's uid: the subject of its ``status.custody`` chain.
    checkpoint_uid: str = ""

    @property
    def custody_subject(self) -> str:
        """The chain anchor's subject: the CR uid (one chain per ForensicCheckpoint), or the
        capture key when exporting outside a CR."""
        return self.checkpoint_uid or self.capture_key


MANIFEST_API_VERSION = "forensic-checkpoint.dev/evidence-v1"


class EvidenceManifest(KubeModel):
    """The sidecar written next to an exported archive (``<sha256>.evidence.json``), and what
    ``forensic-checkpoint verify --sidecar`` reads: the hashes and the custody chain as of the
    export, with its head, so that a chain shown later can be checked against it.
    """

    api_version: str = MANIFEST_API_VERSION
    subject: str  # the custody chain's subject (``EvidenceTarget.custody_subject``)
    target: EvidenceTarget
    export: ExportRecord
    custody: list[CustodyEntry] = Field(default_factory=list, max_length=MAX_CUSTODY_ENTRIES)
    custody_head: Sha256
