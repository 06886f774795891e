"""Append-only, hash-chained chain of custody (pure: no I/O, no clock).

Rules, which :func:`verify_chain` checks:

- ``hash`` = sha256 of the entry's canonical JSON without ``hash``: camelCase keys sorted, no
  whitespace, unset fields left out (so a field added in a later version does not change the
  hashes of older entries), ``at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
- ``prevHash`` of entry 0 is the chain anchor: sha256 of ``forensic-checkpoint/custody/v1\\n``
  plus the subject (the ForensicCheckpoint's uid). A chain copied onto another CR does not verify.
- ``sequence`` counts from 0 without gaps; times never go backwards.

A hash chain makes an edit, a reorder or a removal in the middle evident. It cannot by itself
show that the newest entries were cut off, or that someone rewrote the whole chain: for that,
compare with a head hash kept elsewhere (``expected_head``): the exporter stores the head in the
object's metadata and in the sidecar, i.e. off the cluster in write-once storage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from forensic_checkpoint.api.custody import (
    MAX_CUSTODY_ENTRIES,
    Actor,
    CustodyAction,
    CustodyEntry,
    KubeletResponse,
)
from forensic_checkpoint.errors import IntegrityError

ANCHOR_PREFIX = b"forensic-checkpoint/custody/v1\n"


def chain_anchor(subject: str) -> str:
    """The ``prevHash`` of the first entry of ``subject``'s chain."""
    return hashlib.sha256(ANCHOR_PREFIX + subject.encode()).hexdigest()


def canonical_json(entry: CustodyEntry) -> bytes:
    """The bytes that ``entry.hash`` covers."""
    data: dict[str, Any] = entry.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude={"hash"}
    )
    data["at"] = entry.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: CustodyEntry) -> str:
    return hashlib.sha256(canonical_json(entry)).hexdigest()


def head(chain: Sequence[CustodyEntry], subject: str) -> str:
    """The hash a new entry must link to (the anchor for an empty chain)."""
    return chain[-1].hash if chain else chain_anchor(subject)


def append(
    chain: Sequence[CustodyEntry],
    subject: str,
    *,
    action: CustodyAction,
    at: datetime,
    actor: Actor,
    container: str | None = None,
    node: str | None = None,
    kubelet: KubeletResponse | None = None,
    sha256: str | None = None,
    size_bytes: int | None = None,
    url: str | None = None,
    object_sha256: str | None = None,
    encrypted: bool | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> list[CustodyEntry]:
    """A new list: ``chain`` plus one linked entry. ``chain`` itself is never modified.
    ``container``: the container the entry is about (covered by its hash); None for the CR."""
    if len(chain) >= MAX_CUSTODY_ENTRIES:
        raise IntegrityError(f"custody chain is full ({MAX_CUSTODY_ENTRIES} entries)")
    if chain and at < chain[-1].at:
        raise IntegrityError(f"custody entry at {at.isoformat()} precedes the previous entry")
    placeholder = "0" * 64
    draft = CustodyEntry(
        sequence=len(chain),
        action=action,
        at=at,
        actor=actor,
        container=container,
        node=node,
        kubelet=kubelet,
        sha256=sha256,
        size_bytes=size_bytes,
        url=url,
        object_sha256=object_sha256,
        encrypted=encrypted,
        reason=reason,
        message=message,
        prev_hash=head(chain, subject),
        hash=placeholder,
    )
    return [*chain, draft.model_copy(update={"hash": entry_hash(draft)})]


@dataclass(frozen=True)
class ChainVerdict:
    """The outcome of :func:`verify_chain`; ``problems`` name entries by sequence position."""

    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise IntegrityError("custody chain does not verify: " + "; ".join(self.problems))


def verify_chain(
    chain: Sequence[CustodyEntry], subject: str, *, expected_head: str | None = None
) -> ChainVerdict:
    """Check every link of ``chain``; with ``expected_head``, also that nothing was cut off."""
    problems: list[str] = []
    prev = chain_anchor(subject)
    prev_at: datetime | None = None
    for position, entry in enumerate(chain):
        if entry.sequence != position:
            problems.append(f"entry {position}: sequence is {entry.sequence}")
        if entry.prev_hash != prev:
            problems.append(f"entry {position}: prevHash does not link to the previous entry")
        if entry_hash(entry) != entry.hash:
            problems.append(f"entry {position}: content does not match its hash")
        if prev_at is not None and entry.at < prev_at:
            problems.append(f"entry {position}: time goes backwards")
        prev, prev_at = entry.hash, entry.at
    if expected_head is not None and prev != expected_head:
        problems.append("chain head does not match the recorded head (entries missing or added)")
    return ChainVerdict(problems)


def captured_sha256(chain: Sequence[CustodyEntry]) -> str | None:
    """The archive's sha256 as recorded at capture (the first ``Captured`` entry)."""
    for entry in chain:
        if entry.action is CustodyAction.CAPTURED and entry.sha256:
            return entry.sha256
    return None


def captured_sha256s(chain: Sequence[CustodyEntry]) -> set[str]:
    """Every archive hash recorded at capture (a chain covers all containers of its CR)."""
    return {e.sha256 for e in chain if e.action is CustodyAction.CAPTURED and e.sha256}


def exported_sha256s(chain: Sequence[CustodyEntry]) -> set[str]:
    """Every exported object's hash (the encrypted form when encryption is on)."""
    return {
        e.object_sha256 for e in chain if e.action is CustodyAction.EXPORTED and e.object_sha256
    }


def parse_chain(raw: Sequence[dict[str, Any]]) -> list[CustodyEntry]:
    """Entries from ``status.custody`` or a sidecar (camelCase JSON)."""
    try:
        return [CustodyEntry.model_validate(item) for item in raw]
    except ValueError as exc:
        raise IntegrityError(f"custody entries are malformed: {exc}") from exc
