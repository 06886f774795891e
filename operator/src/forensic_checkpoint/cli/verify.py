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
from typing import IO, Any

from forensic_checkpoint.api.custody import CustodyAction, CustodyEntry, EvidenceManifest
from forensic_checkpoint.domain import custody
from forensic_checkpoint.errors import ConfigError, NotFoundError

HELP = "Check a downloaded archive against its recorded sha256 and chain of custody."
EXIT_OK = 0
EXIT_MISMATCH = 1
_CHUNK = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", type=Path, help="the downloaded archive (.tar, .tar.age, ...)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sidecar", type=Path, help="the <sha256>.evidence.json manifest")
    source.add_argument("--ref", metavar="NAME", help="the ForensicCheckpoint to read")
    parser.add_argument("-n", "--namespace", default="default", help="namespace of --ref")
    parser.add_argument("--container", help="which container of --ref (if it has several)")
    parser.add_argument("--kubeconfig", help="kubeconfig for --ref (else the usual lookup)")
    parser.add_argument(
        "--identity", type=Path, help="age identity file: also check the decrypted plaintext"
    )


@dataclass
class Record:
    """What the evidence record says the bytes must be."""

    subject: str
    chain: list[CustodyEntry]
    captured_sha256: str | None
    object_sha256s: set[str] = field(default_factory=set)
    expected_head: str | None = None
    problems: list[str] = field(default_factory=list)


def record_from_manifest(manifest: EvidenceManifest) -> Record:
    record = Record(
        subject=manifest.subject,
        chain=list(manifest.custody),
        captured_sha256=custody.captured_sha256(manifest.custody),
        object_sha256s={manifest.export.sha256},
        expected_head=manifest.custody_head,
    )
    if record.captured_sha256 not in (None, manifest.export.archive_sha256):
        record.problems.append("the manifest's archive sha256 differs from the captured one")
    if record.captured_sha256 is None:
        record.captured_sha256 = manifest.export.archive_sha256
    return record


def record_from_checkpoint(obj: dict[str, Any], container: str | None) -> Record:
    """From a ForensicCheckpoint object: ``status.containers[]`` with ``captureKey`` and
    ``custody``; the chain's subject is the capture key."""
    name = obj.get("metadata", {}).get("name", "?")
    statuses = obj.get("status", {}).get("containers", []) or []
    if container is not None:
        statuses = [s for s in statuses if s.get("name") == container]
    if not statuses:
        raise NotFoundError(f"ForensicCheckpoint {name} has no container status {container or ''}")
    if len(statuses) > 1:
        names = ", ".join(str(s.get("name")) for s in statuses)
        raise ConfigError(
            f"ForensicCheckpoint {name} has several containers ({names}): --container"
        )
    status = statuses[0]
    chain = custody.parse_chain(status.get("custody", []) or [])
    return Record(
        subject=str(status.get("captureKey", "")),
        chain=chain,
        captured_sha256=custody.captured_sha256(chain),
        object_sha256s={
            e.object_sha256
            for e in chain
            if e.action is CustodyAction.EXPORTED and e.object_sha256 is not None
        },
    )


def _fetch_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    from forensic_checkpoint.api.base import API_VERSION
    from forensic_checkpoint.k8s import client

    api = client.from_environment(args.kubeconfig)
    path = f"/apis/{API_VERSION}/namespaces/{args.namespace}/forensiccheckpoints/{args.ref}"
    obj = client.request_json(api, "GET", path)
    if not isinstance(obj, dict):
        raise NotFoundError(f"ForensicCheckpoint {args.namespace}/{args.ref} not found")
    return obj


def sha256_of(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def check(archive: Path, record: Record, identity: Path | None) -> list[str]:
    """Everything that does not match; empty when the archive is the recorded evidence."""
    from forensic_checkpoint.agent import encryption

    problems = list(record.problems)
    verdict = custody.verify_chain(record.chain, record.subject, expected_head=record.expected_head)
    problems.extend(f"custody: {p}" for p in verdict.problems)
    if record.captured_sha256 is None:
        problems.append("the record holds no sha256 of the captured archive")
    try:
        with archive.open("rb") as stream:
            head = stream.read(64)
            stream.seek(0)
            actual = sha256_of(stream)
    except OSError as exc:
        raise ConfigError(f"cannot read {archive}: {exc.strerror}") from exc

    if actual == record.captured_sha256:
        print(f"{archive}: sha256 {actual} matches the archive as captured")
    elif actual in record.object_sha256s:
        print(f"{archive}: sha256 {actual} matches the exported object")
        if identity is not None and encryption.is_age_encrypted(head):
            with encryption.decrypt_to_stream(archive, identity) as plain:
                plaintext = sha256_of(plain)
            if plaintext == record.captured_sha256:
                print(f"{archive}: decrypted sha256 {plaintext} matches the archive as captured")
            else:
                captured = record.captured_sha256
                problems.append(
                    f"decrypted sha256 {plaintext} differs from the captured {captured}"
                )
    else:
        expected = ", ".join(sorted(filter(None, {record.captured_sha256, *record.object_sha256s})))
        problems.append(f"sha256 {actual} matches no recorded hash (expected one of: {expected})")
    return problems


def run(args: argparse.Namespace) -> int:
    if args.sidecar is not None:
        try:
            manifest = EvidenceManifest.model_validate_json(args.sidecar.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read {args.sidecar}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ConfigError(f"{args.sidecar} is not an evidence manifest: {exc}") from exc
        record = record_from_manifest(manifest)
    else:
        record = record_from_checkpoint(_fetch_checkpoint(args), args.container)
    problems = check(args.archive, record, args.identity)
    if problems:
        for problem in problems:
            print(f"MISMATCH: {problem}", file=sys.stderr)
        return EXIT_MISMATCH
    print(f"custody chain of {record.subject}: {len(record.chain)} entries verify")
    return EXIT_OK
