"""Export to a real S3-compatible server over HTTP (moto server mode on loopback)."""

from __future__ import annotations

import hashlib
import json
import random
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from tests.factories import by_agent, evidence_target, requested

from forensic_checkpoint.agent.evidence.export import Exporter
from forensic_checkpoint.agent.evidence.export_config import ExportConfig, object_key
from forensic_checkpoint.agent.evidence.s3 import backoff_delays
from forensic_checkpoint.api.custody import (
    CustodyAction,
    EvidenceManifest,
)
from forensic_checkpoint.domain.evidence import custody
from forensic_checkpoint.errors import ConfigError, ExportError, IntegrityError

from .conftest import ACCESS_KEY, SECRET_KEY

MIB = 1024 * 1024
TARGET = evidence_target(
    "6f1c2a8e-0d1b-4e57-9a51-3c1f4f0b2d11", "shop", "web-7d9f-abc", "app", "web-incident"
)


def config(endpoint: str, bucket: str, state_dir: Path, **extra: Any) -> ExportConfig:
    return ExportConfig(
        bucket=bucket,
        state_dir=state_dir,
        endpoint_url=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        prefix="evidence",
        cluster="prod-eu",
        part_size=5 * MIB,
        backoff_base_seconds=0.05,
        node_name="node-a",
        **extra,
    )


def captured_chain(sha: str) -> list[Any]:
    chain = requested(TARGET.custody_subject, datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    return by_agent(
        chain,
        TARGET.custody_subject,
        CustodyAction.CAPTURED,
        datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC),
        node="node-a",
        sha256=sha,
    )


def read_object(s3: Any, bucket: str, url: str) -> tuple[bytes, dict[str, str]]:
    key = url.removeprefix(f"s3://{bucket}/")
    answer = s3.get_object(Bucket=bucket, Key=key)
    return answer["Body"].read(), answer["Metadata"]


def test_export_uploads_verifies_and_records(
    s3_endpoint: str, s3: Any, bucket: str, archive: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = archive
    exporter = Exporter(config(s3_endpoint, bucket, tmp_path / "state"))
    report = json.dumps({"processes": [{"pid": 1, "comm": "nginx"}]}).encode()
    outcome = exporter.export(path, sha, TARGET, report_json=report, chain=captured_chain(sha))

    key = f"evidence/prod-eu/shop/web-7d9f-abc/app/{TARGET.capture_key}/{sha}.tar"
    assert outcome.record.url == f"s3://{bucket}/{key}"
    assert (outcome.parts_uploaded, outcome.parts_skipped, outcome.uploaded) == (5, 0, True)
    body, meta = read_object(s3, bucket, outcome.record.url)
    assert hashlib.sha256(body).hexdigest() == sha == outcome.record.sha256
    assert meta["sha256"] == sha and meta["encryption"] == "none"
    assert outcome.record.size_bytes == path.stat().st_size

    report_body, _ = read_object(s3, bucket, outcome.record.report_url or "")
    assert report_body == report

    manifest_body, _ = read_object(s3, bucket, outcome.record.manifest_url or "")
    manifest = EvidenceManifest.model_validate_json(manifest_body)
    assert manifest.export == outcome.record
    assert [e.action for e in manifest.custody] == [
        CustodyAction.REQUESTED,
        CustodyAction.CAPTURED,
        CustodyAction.EXPORTED,
        CustodyAction.VERIFIED,
    ]
    verdict = custody.verify_chain(
        manifest.custody, TARGET.custody_subject, expected_head=manifest.custody_head
    )
    assert verdict.ok, verdict.problems
    assert manifest.custody == outcome.custody
    assert not list((tmp_path / "state").iterdir()), "state and spool are removed after success"


def test_a_second_export_neither_overwrites_nor_uploads(
    s3_endpoint: str, s3: Any, bucket: str, archive: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = archive
    exporter = Exporter(config(s3_endpoint, bucket, tmp_path / "state"))
    first = exporter.export(path, sha, TARGET, chain=captured_chain(sha))
    before = s3.head_object(Bucket=bucket, Key=first.record.url.split("/", 3)[3])
    again = exporter.export(path, sha, TARGET, chain=captured_chain(sha))
    after = s3.head_object(Bucket=bucket, Key=first.record.url.split("/", 3)[3])
    assert not again.uploaded and again.parts_uploaded == 0
    assert before["LastModified"] == after["LastModified"]
    # The manifest written first stays the record, chain included.
    assert again.custody == first.custody
    assert again.record == first.record


def test_other_content_at_the_key_is_never_overwritten(
    s3_endpoint: str, s3: Any, bucket: str, archive: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = archive
    cfg = config(s3_endpoint, bucket, tmp_path / "state")
    key = object_key(cfg, TARGET, sha)
    s3.put_object(Bucket=bucket, Key=key, Body=b"planted", Metadata={"archive-sha256": "0" * 64})
    with pytest.raises(IntegrityError, match="not overwriting"):
        Exporter(cfg).export(path, sha, TARGET)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"planted"


def test_a_changed_local_archive_is_refused(
    s3_endpoint: str, s3: Any, bucket: str, archive: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = archive
    with path.open("r+b") as f:
        f.seek(7 * MIB)
        f.write(b"tampered")
    with pytest.raises(IntegrityError, match="changed since it was hashed"):
        Exporter(config(s3_endpoint, bucket, tmp_path / "state")).export(path, sha, TARGET)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads") is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("part_size", 1 * MIB), ("prefix", "../escape"), ("cluster", "a/b"), ("bucket", "")],
)
def test_invalid_configuration_is_refused(field: str, value: Any, tmp_path: Path) -> None:
    values: dict[str, Any] = {"bucket": "b", "state_dir": tmp_path, field: value}
    with pytest.raises(ConfigError):
        ExportConfig(**values)


def test_connection_errors_are_retried_with_backoff(
    s3: Any, bucket: str, archive: tuple[Path, str], tmp_path: Path
) -> None:
    """The store is down when the export starts and comes up during the backoff."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    late = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            late.start()  # moto keeps its state per process: the bucket is there too

    path, sha = archive
    cfg = config(f"http://127.0.0.1:{port}", bucket, tmp_path / "state", max_attempts=4)
    try:
        outcome = Exporter(cfg, sleep=sleep).export(path, sha, TARGET)
    finally:
        late.stop()
    assert outcome.record.sha256 == sha
    assert len(sleeps) == 2
    assert sleeps[1] > sleeps[0] * 0.9  # exponential, with jitter in [50%, 100%]


def test_refusals_fail_at_once_without_retries(
    s3_endpoint: str, archive: tuple[Path, str], tmp_path: Path
) -> None:
    sleeps: list[float] = []
    path, sha = archive
    cfg = config(s3_endpoint, "no-such-bucket-here", tmp_path / "state")
    with pytest.raises(ExportError, match="NoSuchBucket"):
        Exporter(cfg, sleep=sleeps.append).export(path, sha, TARGET)
    assert sleeps == []


def test_backoff_is_exponential_capped_and_jittered(tmp_path: Path) -> None:
    cfg = ExportConfig(
        bucket="b",
        state_dir=tmp_path,
        max_attempts=8,
        backoff_base_seconds=1,
        backoff_max_seconds=10,
    )
    delays = backoff_delays(cfg, random.Random(7))  # noqa: S311 - reproducible jitter
    assert len(delays) == 7
    for n, delay in enumerate(delays):
        ceiling = min(10, 2**n)
        assert ceiling / 2 <= delay <= ceiling


class _Crash(Exception):
    """Stands in for the process dying after some parts (in-process variant)."""


def _crash_after(client: Any, parts: int) -> None:
    real = client.upload_part
    count = {"n": 0}

    def upload_part(**kwargs: Any) -> Any:
        if count["n"] == parts:
            raise _Crash
        count["n"] += 1
        return real(**kwargs)

    client.upload_part = upload_part


def test_an_upload_the_store_dropped_starts_again(
    s3_endpoint: str, s3: Any, bucket: str, archive: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = archive
    cfg = config(s3_endpoint, bucket, tmp_path / "state")
    crashing = Exporter(cfg)
    _crash_after(crashing.client, 2)
    with pytest.raises(_Crash):
        crashing.export(path, sha, TARGET)
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert len(uploads) == 1
    # e.g. a bucket lifecycle rule aborting incomplete uploads
    s3.abort_multipart_upload(Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"])

    outcome = Exporter(cfg).export(path, sha, TARGET)
    assert (outcome.parts_uploaded, outcome.parts_skipped) == (5, 0)
    assert outcome.record.sha256 == sha


def test_an_interrupted_upload_resumes_in_process_too(
    s3_endpoint: str, s3: Any, bucket: str, archive: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = archive
    cfg = config(s3_endpoint, bucket, tmp_path / "state")
    crashing = Exporter(cfg)
    _crash_after(crashing.client, 3)
    with pytest.raises(_Crash):
        crashing.export(path, sha, TARGET)
    outcome = Exporter(cfg).export(path, sha, TARGET)
    assert (outcome.parts_uploaded, outcome.parts_skipped) == (2, 3)
    body = s3.get_object(Bucket=bucket, Key=outcome.record.url.split("/", 3)[3])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha


def test_config_from_chart_values(tmp_path: Path) -> None:
    cfg = ExportConfig.from_values(
        {
            "endpoint": "https://minio:9000",
            "bucket": "forensic-evidence",
            "prefix": "/fc/",
            "cluster": "prod-eu-1",
            "partSizeMiB": 16,
            "ageRecipients": ["age1example"],
        },
        state_dir=tmp_path,
        node_name="node-a",
    )
    assert (cfg.endpoint_url, cfg.prefix, cfg.part_size, cfg.encrypt) == (
        "https://minio:9000",
        "fc",
        16 * MIB,
        True,
    )
    assert cfg.with_overrides(prefix="team-b").prefix == "team-b"
    with pytest.raises(ConfigError, match="miss 'bucket'"):
        ExportConfig.from_values({}, state_dir=tmp_path)
    with pytest.raises(ConfigError, match="invalid"):
        ExportConfig.from_values({"bucket": "b", "partSizeMiB": "lots"}, state_dir=tmp_path)
    assert not cfg.during_analysis  # the default: after Completed
    early = {"bucket": "b", "duringAnalysis": True}
    assert ExportConfig.from_values(early, state_dir=tmp_path).during_analysis
    with pytest.raises(ConfigError, match="duringAnalysis must be true or false"):
        ExportConfig.from_values({"bucket": "b", "duringAnalysis": "yes"}, state_dir=tmp_path)


def test_an_upload_recorded_for_another_bucket_is_abandoned(
    s3_endpoint: str, s3: Any, bucket: str, archive: tuple[Path, str], tmp_path: Path
) -> None:
    """The configuration changed between the crash and the restart: start afresh in the new
    bucket and abort the old upload instead of finishing it where nobody looks."""
    path, sha = archive
    old = config(s3_endpoint, bucket, tmp_path / "state")
    crashing = Exporter(old)
    _crash_after(crashing.client, 1)
    with pytest.raises(_Crash):
        crashing.export(path, sha, TARGET)
    other_bucket = bucket + "-b"
    s3.create_bucket(Bucket=other_bucket)
    outcome = Exporter(old.with_overrides(bucket=other_bucket)).export(path, sha, TARGET)
    assert outcome.record.url.startswith(f"s3://{other_bucket}/")
    assert (outcome.parts_uploaded, outcome.parts_skipped) == (5, 0)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads") is None
