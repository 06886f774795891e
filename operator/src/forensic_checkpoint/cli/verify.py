"""`forensic-checkpoint verify`: does this downloaded archive match the recorded evidence?

The record is either the sidecar written next to the exported object (``--sidecar
<sha256>.evidence.json``) or the ForensicCheckpoint itself (``--ref NAME``, read through the
Kubernetes API). Either way the custody chain is checked link by link, and the file's sha256 must
equal the archive's hash at capture or the hash of an exported object (the encrypted form). With
``--identity`` an encrypted file is also decrypted and its plaintext checked against the capture.

Exit codes: 0 everything matches, 1 a mismatch (or an error), 2 usage.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from forensic_checkpoint.api.custody import CustodyEntry, EvidenceManifest
from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.domain.evidence import custody
from forensic_checkpoint.errors import ConfigError, IntegrityError, NotFoundError

HELP = "Check a downloaded archive against its recorded sha256 and chain of custody."
EXIT_OK = 0
EXIT_MISMATCH = 1
_CHUNK = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", type=Path, help="the downloaded archive (.tar, .tar.age, ...)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sidecar", type=Path, help="the <sha256>.evidence.json manifest")
    source.add_argument("--ref", metavar="NAME", help="the ForensicCheckpoint to read")
    from forensic_checkpoint.cli.flags import add_kube_flags

    add_kube_flags(parser)  # for --ref, as kubectl resolves them
    parser.add_argument(
        "--identity", type=Path, help="age identity file: also check the decrypted plaintext"
    )


@dataclass
class EvidenceRecord:
    """What the evidence record (a sidecar manifest or a ForensicCheckpoint's status) says the
    bytes must be."""

    subject: str
    chain: list[CustodyEntry]
    #: Archive hashes at capture (one per captured container of the CR).
    captured_sha256s: set[str] = field(default_factory=set)
    #: Hashes of exported objects (the encrypted form when encryption is on).
    object_sha256s: set[str] = field(default_factory=set)
    expected_head: str | None = None
    problems: list[str] = field(default_factory=list)


def record_from_manifest(manifest: EvidenceManifest) -> EvidenceRecord:
    record = EvidenceRecord(
        subject=manifest.subject,
        chain=list(manifest.custody),
        captured_sha256s={manifest.export.archive_sha256},
        object_sha256s={manifest.export.sha256},
        expected_head=manifest.custody_head,
    )
    if manifest.export.archive_sha256 not in custody.captured_sha256s(manifest.custody):
        record.problems.append("the manifest's archive sha256 is not in its custody chain")
    return record


def record_from_checkpoint(fcp: ForensicCheckpoint) -> EvidenceRecord:
    """From a ForensicCheckpoint: ``status.custody`` is its chain, ``metadata.uid`` the chain's
    subject."""
    metadata = fcp.metadata
    chain = list(fcp.status.custody) if fcp.status is not None else []
    if not chain:
        raise NotFoundError(f"ForensicCheckpoint {metadata.get('name', '?')} has no custody yet")
    return EvidenceRecord(
        subject=str(metadata.get("uid", "")),
        chain=chain,
        captured_sha256s=custody.captured_sha256s(chain),
        object_sha256s=custody.exported_sha256s(chain),
    )


def _fetch_checkpoint(args: argparse.Namespace) -> ForensicCheckpoint:
    from forensic_checkpoint.k8s import client
    from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
    from forensic_checkpoint.k8s.kubeconfig import resolve

    namespace = resolve(args.kubeconfig, args.context, args.namespace).namespace
    api = client.from_environment(args.kubeconfig, context=args.context)
    try:
        return ForensicCheckpoints(api).read(namespace, args.ref)
    except ValidationError as exc:
        # A tampered status may not even parse: that is a mismatch to report, not a crash.
        raise IntegrityError(f"ForensicCheckpoint {args.ref} is malformed: {exc}") from exc
    finally:
        client.close(api)


def sha256_of(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def check(archive: Path, record: EvidenceRecord, identity: Path | None) -> list[str]:
    """Everything that does not match; empty when the archive is the recorded evidence."""
    from forensic_checkpoint.agent.evidence import encryption

    problems = list(record.problems)
    verdict = custody.verify_chain(record.chain, record.subject, expected_head=record.expected_head)
    problems.extend(f"custody: {p}" for p in verdict.problems)
    if not record.captured_sha256s:
        problems.append("the record holds no sha256 of a captured archive")
    try:
        with archive.open("rb") as stream:
            head = stream.read(64)
            stream.seek(0)
            actual = sha256_of(stream)
    except OSError as exc:
        raise ConfigError(f"cannot read {archive}: {exc.strerror}") from exc

    if actual in record.captured_sha256s:
        print(f"{archive}: sha256 {actual} matches the archive as captured")
    elif actual in record.object_sha256s:
        print(f"{archive}: sha256 {actual} matches the exported object")
        if identity is not None and encryption.is_age_encrypted(head):
            with encryption.decrypt_to_stream(archive, identity) as plain:
                plaintext = sha256_of(plain)
            if plaintext in record.captured_sha256s:
                print(f"{archive}: decrypted sha256 {plaintext} matches the archive as captured")
            else:
                problems.append(f"decrypted sha256 {plaintext} matches no captured archive")
    else:
        expected = ", ".join(sorted(record.captured_sha256s | record.object_sha256s))
        problems.append(f"sha256 {actual} matches no recorded hash (expected one of: {expected})")
    return problems


def run(args: argparse.Namespace) -> int:
    if args.sidecar is not None:
        try:
            manifest = EvidenceManifest.model_validate_json(args.sidecar.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read {args.sidecar}: {exc.strerror}") from exc
        except ValueError as exc:  # pydantic's ValidationError: first problem only, one line
            first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise ConfigError(f"{args.sidecar} is not an evidence manifest: {first}") from exc
        record = record_from_manifest(manifest)
    else:
        record = record_from_checkpoint(_fetch_checkpoint(args))
    problems = check(args.archive, record, args.identity)
    if problems:
        for problem in problems:
            print(f"MISMATCH: {problem}", file=sys.stderr)
        return EXIT_MISMATCH
    print(f"custody chain of {record.subject}: {len(record.chain)} entries verify")
    return EXIT_OK
