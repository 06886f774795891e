"""Export of an archive, its report and an evidence manifest to S3-compatible storage.

Guarantees, and how:

- **Bounded memory**: multipart upload, one part (``part_size``, default 8 MiB) in memory at a
  time; encryption streams to a spool file first (pyrage copies through small buffers).
- **Retries**: each S3 call is retried with exponential backoff and jitter on connection
  errors, timeouts, 5xx and throttling; 4xx answers fail at once.
- **Resumable**: after each part the upload id and the ETags of finished parts go to a state
  file under ``state_dir`` (written atomically). A restarted agent reads it, lists the parts the
  store actually holds, and uploads only those missing (a part uploaded but not yet recorded
  when the agent died is sent again: at most one). Encryption is randomised, so the spooled
  ciphertext is kept until the upload completes and reused on resume.
- **Verified**: the sha256 of the object's bytes is known before the upload (the capture's hash
  for a plain archive, the spool's hash for an encrypted one) and re-computed from the local
  bytes while parts are sent; after completion the object is read back from the store and
  hashed again. Re-reading costs one download, but it is the only end-to-end proof that works
  on every S3-compatible store: S3's own SHA256 checksum of a multipart object is a checksum of
  part checksums, not the object's sha256, and MinIO/Ceph/moto differ in what they support.
  The hash is also stored as object metadata (``x-amz-meta-sha256``).
- **Never overwrites**: keys are deterministic
  (``<prefix>/<cluster>/<namespace>/<pod>/<container>/<captureKey>/<archiveSha256>.tar[.age]``)
  and every write is conditional (``If-None-Match: *``); a store that ignores the condition is
  still guarded by a HEAD check first. An object already at the key with the same archive hash
  is our own earlier export: it is verified and reported, not written again.
- **Archive first**: :meth:`Exporter.export_archive` uploads only the archive, as soon as its
  sha256 is known (beside the analysis, the page cache still warm); :meth:`Exporter.export`
  later finds it by that hash and adds the report and the manifest without reading the archive
  again (``archive_verified``).
- **Cancellable**: ``cancelled`` is asked between parts; a cancelled upload is aborted and its
  state file and spool removed (:class:`ExportCancelled`), so nothing is left in the bucket.

(Over 400 lines: the upload's steps share one S3 client, its retries and the state file, and
read best in order in one place.)
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pyrage
from botocore.exceptions import BotoCoreError

from forensic_checkpoint.agent.evidence import encryption
from forensic_checkpoint.agent.evidence.export_config import MAX_PARTS, ExportConfig, object_key
from forensic_checkpoint.agent.evidence.manifest import build_manifest, exported_chain
from forensic_checkpoint.agent.evidence.s3 import S3RequestError, make_client, retry
from forensic_checkpoint.agent.evidence.upload_state import UploadState
from forensic_checkpoint.api.custody import (
    CustodyEntry,
    EvidenceManifest,
    EvidenceTarget,
    ExportRecord,
)
from forensic_checkpoint.errors import ExportError, ForensicCheckpointError, IntegrityError

log = logging.getLogger(__name__)

READ_CHUNK = 1 * 1024 * 1024

_T = TypeVar("_T")


def _never() -> bool:
    return False


class ExportCancelled(ForensicCheckpointError):
    """The capture was deleted during its upload: the upload was aborted, nothing is kept."""

    reason = "ExportCancelled"


@dataclass(frozen=True)
class ArchiveObject:
    """The archive's object in the store, uploaded (or found) and read back."""

    key: str
    sha256: str
    size: int
    parts_uploaded: int
    parts_skipped: int
    uploaded: bool


@dataclass(frozen=True)
class ExportOutcome:
    record: ExportRecord
    #: The input chain plus the Exported and Verified entries, as the manifest holds it.
    custody: list[CustodyEntry]
    parts_uploaded: int
    parts_skipped: int
    #: False when the object was already there from an earlier run.
    uploaded: bool


class Exporter:
    """Uploads captures with one S3 client; one instance per agent, one capture at a time."""

    def __init__(
        self,
        config: ExportConfig,
        client: Any | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.client = client if client is not None else make_client(config)
        self._clock = clock
        self._sleep = sleep
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self._recipients = encryption.parse_recipients(config.recipients) if config.encrypt else []

    def _s3(self, what: str, call: Callable[[], _T]) -> _T:
        return retry(self.config, what, call, self._sleep)

    def url(self, key: str) -> str:
        return f"s3://{self.config.bucket}/{key}"

    def export(
        self,
        archive: Path,
        archive_sha256: str,
        target: EvidenceTarget,
        *,
        report_json: bytes | None = None,
        chain: Sequence[CustodyEntry] = (),
        archive_verified: bool = False,
    ) -> ExportOutcome:
        """Upload ``archive`` (whose capture-time hash is ``archive_sha256``), its report and a
        manifest; resume an interrupted upload of the same capture if one is recorded. With
        ``archive_verified`` (:meth:`export_archive` read this archive's object back already),
        the object found at its key is not read back again."""
        obj = self._archive(
            archive, archive_sha256, target, cancelled=_never, verify=not archive_verified
        )
        key, object_sha256, size = obj.key, obj.sha256, obj.size
        stem = key.rsplit(".tar", 1)[0]
        exported_at = self._clock()

        report_url = None
        if report_json is not None:
            report_key = stem + ".report.json" + (encryption.SUFFIX if self.config.encrypt else "")
            body = (
                pyrage.encrypt(report_json, self._recipients)
                if self.config.encrypt
                else report_json
            )
            self._put_once(report_key, body, {"archive-sha256": archive_sha256})
            report_url = self.url(report_key)

        manifest_key = stem + ".evidence.json"
        record = ExportRecord(
            url=self.url(key),
            sha256=object_sha256,
            archive_sha256=archive_sha256,
            size_bytes=size,
            encrypted=self.config.encrypt,
            exported_at=exported_at,
            report_url=report_url,
            manifest_url=self.url(manifest_key),
        )
        new_chain = exported_chain(chain, target, record, self.config.node_name)
        manifest = build_manifest(new_chain, target, record)
        body = manifest.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()
        if not self._put_once(manifest_key, body, {"archive-sha256": archive_sha256}):
            # An earlier run wrote it: that manifest is the record, keep its chain.
            manifest = self.read_manifest(manifest_key)
            record, new_chain = manifest.export, manifest.custody

        self._forget(target.capture_key)
        return ExportOutcome(record, new_chain, obj.parts_uploaded, obj.parts_skipped, obj.uploaded)

    def export_archive(
        self,
        archive: Path,
        archive_sha256: str,
        target: EvidenceTarget,
        *,
        cancelled: Callable[[], bool] = _never,
    ) -> ArchiveObject:
        """Upload and read back the archive alone (its report and manifest follow with
        :meth:`export`); ``cancelled`` is asked between parts (:class:`ExportCancelled`)."""
        obj = self._archive(archive, archive_sha256, target, cancelled=cancelled, verify=True)
        self._forget(target.capture_key)  # stored: no resume needs the state or the ciphertext
        return obj

    def _forget(self, capture_key: str) -> None:
        for path in self._paths(capture_key):
            path.unlink(missing_ok=True)

    def _paths(self, capture_key: str) -> tuple[Path, Path]:
        """The upload's state file and its encryption spool."""
        state_dir = self.config.state_dir
        return state_dir / f"{capture_key}.upload.json", state_dir / f"{capture_key}.tar.age"

    def _archive(
        self,
        archive: Path,
        archive_sha256: str,
        target: EvidenceTarget,
        *,
        cancelled: Callable[[], bool],
        verify: bool,
    ) -> ArchiveObject:
        key = object_key(self.config, target, archive_sha256)
        state_path, spool = self._paths(target.capture_key)
        existing = self._head(key)
        if existing is not None:
            meta = existing.get("Metadata", {})
            if meta.get("archive-sha256") != archive_sha256:
                raise IntegrityError(f"{self.url(key)} exists with other content; not overwriting")
            object_sha256, size = meta.get("sha256", ""), int(existing["ContentLength"])
            if verify:
                self._verify(key, object_sha256, size)
            return ArchiveObject(key, object_sha256, size, 0, 0, uploaded=False)
        source, object_sha256, size = self._prepare(archive, archive_sha256, spool, state_path)
        try:
            parts_uploaded, parts_skipped = self._multipart(
                source=source,
                key=key,
                object_sha256=object_sha256,
                size=size,
                archive_sha256=archive_sha256,
                target=target,
                state_path=state_path,
                cancelled=cancelled,
            )
        except ExportCancelled:
            spool.unlink(missing_ok=True)
            raise
        self._verify(key, object_sha256, size)
        return ArchiveObject(key, object_sha256, size, parts_uploaded, parts_skipped, uploaded=True)

    def abandon(self, capture_key: str) -> bool:
        """Abort ``capture_key``'s recorded upload, if any, and drop its spool (the capture was
        deleted, e.g. while the agent was down); whether anything was left."""
        state_path, spool = self._paths(capture_key)
        found = state_path.exists() or spool.exists()
        state = UploadState.load(state_path)
        if state is not None:
            self._abort(state, state_path)
        self._forget(capture_key)
        return found

    def remove(self, key: str) -> None:
        """Delete an object this agent wrote for a capture deleted meanwhile (best effort: a
        bucket with object lock keeps it, and says so in the log)."""
        try:
            self._s3(
                f"DELETE {key}",
                lambda: self.client.delete_object(Bucket=self.config.bucket, Key=key),
            )
        except S3RequestError as exc:
            log.warning("could not delete %s: %s", self.url(key), exc.message)

    # --- steps ---

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = self._s3(
                f"HEAD {key}", lambda: self.client.head_object(Bucket=self.config.bucket, Key=key)
            )
        except S3RequestError as exc:
            if exc.status == 404 or exc.code in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return answer

    def _prepare(
        self, archive: Path, archive_sha256: str, spool: Path, state_path: Path
    ) -> tuple[Path, str, int]:
        """The file to upload with its sha256 and size (the spool when encrypting)."""
        if not self.config.encrypt:
            return archive, archive_sha256, archive.stat().st_size
        state = UploadState.load(state_path)
        if state is not None and spool.exists() and spool.stat().st_size == state.object_size:
            return spool, state.object_sha256, state.object_size  # resume: same ciphertext
        encrypted = encryption.encrypt_file(archive, spool, self._recipients)
        return spool, encrypted.sha256, encrypted.size_bytes

    def _multipart(
        self,
        *,
        source: Path,
        key: str,
        object_sha256: str,
        size: int,
        archive_sha256: str,
        target: EvidenceTarget,
        state_path: Path,
        cancelled: Callable[[], bool],
    ) -> tuple[int, int]:
        bucket = self.config.bucket
        state = self._resume(state_path, key, object_sha256, size)
        if state is None:
            part_size = max(self.config.part_size, -(-size // MAX_PARTS))
            metadata = {
                "sha256": object_sha256,
                "archive-sha256": archive_sha256,
                "capture-key": target.capture_key,
                "encryption": "age" if self.config.encrypt else "none",
            }
            created = self._s3(
                f"create upload {key}",
                lambda: self.client.create_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    Metadata=metadata,
                    ContentType="application/octet-stream",
                ),
            )
            state = UploadState(bucket, key, created["UploadId"], part_size, object_sha256, size)
            state.save(state_path)

        digest = hashlib.sha256()
        uploaded = skipped = 0
        part_count = max(1, -(-size // state.part_size))
        with source.open("rb") as src:
            for number in range(1, part_count + 1):
                if cancelled():
                    self._abort(state, state_path)
                    raise ExportCancelled(f"upload of {self.url(key)} cancelled and aborted")
                data = src.read(state.part_size)
                digest.update(data)
                if number in state.parts:
                    skipped += 1
                    continue
                state.parts[number] = self._upload_part(state, number, data)
                state.save(state_path)
                uploaded += 1
        if digest.hexdigest() != object_sha256:
            self._abort(state, state_path)
            raise IntegrityError(f"{source} changed since it was hashed; upload aborted")
        if cancelled():
            self._abort(state, state_path)
            raise ExportCancelled(f"upload of {self.url(key)} cancelled and aborted")

        parts = [{"PartNumber": n, "ETag": e} for n, e in sorted(state.parts.items())]
        try:
            self._s3(
                f"complete upload {key}",
                lambda: self.client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=state.upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                ),
            )
        except S3RequestError as exc:
            if exc.code != "PreconditionFailed":
                raise
            raise IntegrityError(
                f"{self.url(key)} appeared during the upload; not overwriting"
            ) from exc
        return uploaded, skipped

    def _resume(
        self, state_path: Path, key: str, object_sha256: str, size: int
    ) -> UploadState | None:
        """The recorded upload, its parts cut down to those the store really holds."""
        state = UploadState.load(state_path)
        if state is None:
            return None
        recorded = (state.bucket, state.key, state.object_sha256, state.object_size)
        if recorded != (self.config.bucket, key, object_sha256, size):
            self._abort(state, state_path)
            return None
        try:
            listed = self._list_parts(state)
        except S3RequestError as exc:
            if exc.code != "NoSuchUpload":
                raise
            log.info("upload %s is gone from the store; starting again", state.upload_id)
            state_path.unlink(missing_ok=True)
            return None
        state.parts = {n: e for n, e in state.parts.items() if listed.get(n) == e}
        log.info("resuming %s: %d parts already stored", key, len(state.parts))
        return state

    def _list_parts(self, state: UploadState) -> dict[int, str]:
        found: dict[int, str] = {}
        marker = 0
        while True:
            page = self._s3(
                f"list parts {state.key}",
                lambda m=marker: self.client.list_parts(  # type: ignore[misc]
                    Bucket=state.bucket, Key=state.key, UploadId=state.upload_id, PartNumberMarker=m
                ),
            )
            for part in page.get("Parts", []):
                found[int(part["PartNumber"])] = str(part["ETag"])
            if not page.get("IsTruncated"):
                return found
            marker = int(page["NextPartNumberMarker"])

    def _upload_part(self, state: UploadState, number: int, data: bytes) -> str:
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - S3 Content-MD5
        answer = self._s3(
            f"upload part {number} of {state.key}",
            lambda: self.client.upload_part(
                Bucket=state.bucket,
                Key=state.key,
                UploadId=state.upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=md5,
            ),
        )
        return str(answer["ETag"])

    def _abort(self, state: UploadState, state_path: Path) -> None:
        try:
            self._s3(
                f"abort upload {state.key}",
                lambda: self.client.abort_multipart_upload(
                    Bucket=state.bucket, Key=state.key, UploadId=state.upload_id
                ),
            )
        except S3RequestError as exc:
            log.warning("could not abort upload %s: %s", state.upload_id, exc.message)
        state_path.unlink(missing_ok=True)

    def _verify(self, key: str, object_sha256: str, size: int) -> None:
        """Read the object back and hash it (see the module docstring for why)."""
        answer = self._s3(
            f"GET {key}", lambda: self.client.get_object(Bucket=self.config.bucket, Key=key)
        )
        digest = hashlib.sha256()
        length = 0
        try:
            for chunk in answer["Body"].iter_chunks(READ_CHUNK):
                digest.update(chunk)
                length += len(chunk)
        except (BotoCoreError, OSError) as exc:
            raise ExportError(f"reading {key} back failed: {exc}") from exc
        finally:
            answer["Body"].close()
        stored = answer.get("Metadata", {}).get("sha256")
        if digest.hexdigest() != object_sha256 or length != size or stored != object_sha256:
            raise IntegrityError(
                f"{self.url(key)} does not match: sha256 {digest.hexdigest()} ({length} bytes), "
                f"expected {object_sha256} ({size} bytes)"
            )

    def _put_once(self, key: str, body: bytes, metadata: dict[str, str]) -> bool:
        """A small conditional PUT; False when the key already exists (nothing written)."""
        if self._head(key) is not None:
            return False
        sha = hashlib.sha256(body).hexdigest()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324 - Content-MD5
        try:
            self._s3(
                f"PUT {key}",
                lambda: self.client.put_object(
                    Bucket=self.config.bucket,
                    Key=key,
                    Body=body,
                    ContentMD5=md5,
                    Metadata={**metadata, "sha256": sha},
                    IfNoneMatch="*",
                ),
            )
        except S3RequestError as exc:
            if exc.code == "PreconditionFailed":
                return False
            raise
        self._verify(key, sha, len(body))
        return True

    def read_manifest(self, manifest_key: str) -> EvidenceManifest:
        answer = self._s3(
            f"GET {manifest_key}",
            lambda: self.client.get_object(Bucket=self.config.bucket, Key=manifest_key),
        )
        try:
            return EvidenceManifest.model_validate_json(answer["Body"].read())
        except ValueError as exc:
            raise IntegrityError(f"{self.url(manifest_key)} is not an evidence manifest") from exc
