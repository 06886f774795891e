"""The agent exports what it captured: a real capture service and export worker on a temporary
node, and moto's S3 server over HTTP. The object's sha256 is checked by reading it back here, and
the custody facts are chained the way the operator chains them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.factories import plain_sample, run_script

from forensic_checkpoint.agent.evidence.export_config import ExportConfig
from forensic_checkpoint.api.agent import CaptureState, ExportPhase
from forensic_checkpoint.api.custody import Actor, ActorKind, CustodyAction, EvidenceManifest
from forensic_checkpoint.domain.evidence import custody

from .agent_node import NODE, Node
from .conftest import ACCESS_KEY, SECRET_KEY

CHILD = Path(__file__).with_name("agent_export_child.py")


@pytest.fixture(scope="module")
def real_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """counter-blog-crio as the kubelet writes it (a plain tar)."""
    return plain_sample("counter-blog-crio", tmp_path_factory.mktemp("sample"))


def export_config(endpoint: str, bucket: str, state: Path, **extra: Any) -> ExportConfig:
    return ExportConfig(
        bucket=bucket,
        state_dir=state / "exports",
        endpoint_url=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        cluster="test",
        part_size=5 * 1024 * 1024,
        max_attempts=2,
        backoff_base_seconds=0.05,
        node_name=NODE,
        **extra,
    )


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Any]:
    nodes: list[Node] = []

    def make(sample: Path, export: ExportConfig | None, root: Path = tmp_path) -> Node:
        node = Node(root, sample, export)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()


def kill_after_two_parts(
    root: Path, endpoint: str, bucket: str, settings_file: Path, *, during_analysis: bool = False
) -> None:
    """Run the export worker over ``root``'s state in a child agent and SIGKILL it once it has
    sent two parts (each part takes 0.5 s)."""
    settings = {
        "stateDir": str(root / "state"),
        "checkpointDir": str(root / "checkpoints"),
        "endpoint": endpoint,
        "bucket": bucket,
        "accessKey": ACCESS_KEY,
        "secretKey": SECRET_KEY,
        "partDelay": 0.5,
        "duringAnalysis": during_analysis,
    }
    child = run_script(CHILD, settings, settings_file)
    assert child.stdout is not None
    printed = [child.stdout.readline().strip() for _ in range(2)]
    child.kill()
    child.communicate(timeout=10)
    assert printed == ["part 1", "part 2"], printed


def operator_chain(facts: list[Any], subject: str) -> list[Any]:
    """What the operator does with the facts: append each, in order, to the CR's chain."""
    chain: list[Any] = []
    for fact in facts:
        chain = custody.append(
            chain,
            subject,
            action=fact.action,
            at=fact.time,
            actor=Actor(kind=ActorKind.AGENT, name=fact.actor),
            node=fact.node,
            kubelet=fact.kubelet_response,
            sha256=fact.sha256,
            size_bytes=fact.size_bytes,
            url=fact.url,
            object_sha256=fact.object_sha256,
            encrypted=fact.encrypted,
            reason=fact.reason,
            message=fact.message,
        )
    return chain


def test_completed_capture_is_exported_and_verified(  # noqa: PLR0917 - pytest fixtures
    s3_endpoint: str, s3: Any, bucket: str, real_archive: Path, tmp_path: Path, node_factory: Any
) -> None:
    node = node_factory(real_archive, export_config(s3_endpoint, bucket, tmp_path / "state"))
    status = node.capture("web")
    assert status.state is CaptureState.COMPLETED
    assert status.export is not None and status.export.phase is ExportPhase.PENDING
    assert status.archive is not None
    archive_sha = status.archive.sha256

    assert node.exports.run_due() == 1
    status = node.service.status(status.key)
    assert status.export is not None and status.export.phase is ExportPhase.EXPORTED, status
    record = status.export.record
    assert record is not None
    assert (record.archive_sha256, record.sha256) == (archive_sha, archive_sha)  # not encrypted

    # The store holds exactly the captured bytes, and the report and manifest next to them.
    key = record.url.removeprefix(f"s3://{bucket}/")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert (
        hashlib.sha256(body).hexdigest()
        == archive_sha
        == hashlib.sha256(Path(status.archive.path).read_bytes()).hexdigest()
    )
    assert key.startswith(f"forensic-checkpoint/test/default/web/app/{status.key}/")
    assert record.report_url is not None and record.manifest_url is not None
    report = s3.get_object(Bucket=bucket, Key=record.report_url.split("/", 3)[3])["Body"].read()
    assert json.loads(report) == {"archive": Path(status.archive.path).name}

    # Facts, in order; chained by the operator they verify, and the manifest's own chain (the
    # node's: Captured, Exported, Verified) verifies under the same subject.
    facts = status.custody_events
    assert [f.action for f in facts] == [
        CustodyAction.CAPTURED,
        CustodyAction.EXPORTED,
        CustodyAction.VERIFIED,
    ]
    assert [f.time for f in facts] == sorted(f.time for f in facts)
    captured, exported, verified = facts
    assert captured.kubelet_response is not None
    assert (captured.kubelet_response.status_code, captured.sha256) == (200, archive_sha)
    assert captured.size_bytes == status.archive.size_bytes
    assert (exported.url, exported.object_sha256, exported.encrypted) == (
        record.url,
        record.sha256,
        False,
    )
    assert verified.object_sha256 == record.sha256
    assert {f.actor for f in facts} == {f"agent/{NODE}"}
    assert {f.container for f in facts} == {"app"}
    uid = status.key.removesuffix("-app")
    assert custody.verify_chain(operator_chain(facts, uid), uid).ok
    manifest = EvidenceManifest.model_validate_json(
        s3.get_object(Bucket=bucket, Key=record.manifest_url.split("/", 3)[3])["Body"].read()
    )
    assert manifest.subject == uid
    assert [e.action for e in manifest.custody] == [f.action for f in facts]
    assert custody.verify_chain(manifest.custody, uid, expected_head=manifest.custody_head).ok

    # The analyst's check of the downloaded object against the sidecar passes.
    (tmp_path / "obj.tar").write_bytes(body)
    (tmp_path / "sidecar.json").write_text(manifest.model_dump_json(by_alias=True))
    verify = subprocess.run(
        [
            *(sys.executable, "-m", "forensic_checkpoint.cli.main", "verify"),
            *(str(tmp_path / "obj.tar"), "--sidecar", str(tmp_path / "sidecar.json")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr

    # A second pass has nothing to do, and adds no facts.
    assert node.exports.run_due() == 0
    assert len(node.service.status(status.key).custody_events) == 3


def test_failed_export_is_retried_and_never_loses_the_archive(
    s3_endpoint: str, s3: Any, real_archive: Path, tmp_path: Path, node_factory: Any
) -> None:
    bucket = f"later-{time.monotonic_ns()}"
    node = node_factory(real_archive, export_config(s3_endpoint, bucket, tmp_path / "state"))
    status = node.capture("web")
    assert status.archive is not None
    archive = Path(status.archive.path)

    assert node.exports.run_due() == 1
    failed = node.service.status(status.key)
    assert failed.export is not None
    assert (failed.export.phase, failed.export.reason) == (ExportPhase.RETRYING, "NoSuchBucket")
    assert failed.export.next_attempt_at is not None and failed.export.attempts == 1
    assert "next in 0.2 s" in (failed.export.message or "")
    assert node.exports.run_due() == 0, "not before the retry time"
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == status.archive.sha256
    assert [f.action for f in failed.custody_events] == [CustodyAction.CAPTURED]

    s3.create_bucket(Bucket=bucket)  # the admin fixes the store
    time.sleep(0.25)
    assert node.exports.run_due() == 1
    done = node.service.status(status.key)
    assert done.export is not None and done.export.phase is ExportPhase.EXPORTED
    assert done.export.attempts == 2
    assert archive.exists(), "export never removes the local archive"
    metrics = node.metrics.render().decode()
    assert 'forensic_checkpoint_agent_exports_total{outcome="NoSuchBucket"} 1.0' in metrics
    assert 'forensic_checkpoint_agent_exports_total{outcome="Exported"} 1.0' in metrics


def test_export_of_a_tampered_archive_fails_for_good(  # noqa: PLR0917 - pytest fixtures
    s3_endpoint: str, s3: Any, bucket: str, real_archive: Path, tmp_path: Path, node_factory: Any
) -> None:
    node = node_factory(real_archive, export_config(s3_endpoint, bucket, tmp_path / "state"))
    status = node.capture("web")
    assert status.archive is not None
    with Path(status.archive.path).open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"X")
    node.exports.run_due()
    failed = node.service.status(status.key)
    assert failed.export is not None
    assert (failed.export.phase, failed.export.reason) == (ExportPhase.FAILED, "IntegrityMismatch")
    assert node.exports.run_due() == 0, "a final failure is not retried"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


@pytest.mark.slow
def test_agent_killed_mid_export_completes_after_restart(  # noqa: PLR0917 - pytest fixtures
    s3_endpoint: str,
    s3: Any,
    bucket: str,
    archive: tuple[Path, str],
    tmp_path: Path,
    node_factory: Any,
) -> None:
    """The agent (its export worker, over the real state directory) is SIGKILLed after two of
    five parts; the restarted agent finds the job in Exporting, sends only the missing parts and
    reports the export with its facts once."""
    sample, sha = archive
    root = tmp_path / "node"
    config = export_config(s3_endpoint, bucket, root / "state")
    node = node_factory(sample, config, root)
    status = node.capture("big")
    assert status.archive is not None and status.archive.sha256 == sha
    node.close()

    kill_after_two_parts(root, s3_endpoint, bucket, tmp_path / "first.json")

    restarted = node_factory(sample, config, root)
    on_disk = restarted.service.status(status.key)
    assert on_disk.export is not None and on_disk.export.phase is ExportPhase.EXPORTING
    sent: list[int] = []
    real_factory = restarted.exports._factory

    def counting(cfg: ExportConfig) -> Any:
        exporter = real_factory(cfg)
        upload = exporter.client.upload_part

        def upload_part(**kwargs: Any) -> Any:
            sent.append(kwargs["PartNumber"])
            return upload(**kwargs)

        exporter.client.upload_part = upload_part
        return exporter

    restarted.exports._factory = counting
    assert restarted.exports.run_due() == 1
    done = restarted.service.status(status.key)
    assert done.export is not None and done.export.phase is ExportPhase.EXPORTED, done.export
    assert done.export.attempts == 2
    assert 1 not in sent and sent == sorted(sent) and sent[-1] == 5, sent
    body = s3.get_object(Bucket=bucket, Key=done.export.record.url.split("/", 3)[3])["Body"]
    assert hashlib.sha256(body.read()).hexdigest() == sha
    assert [f.action for f in done.custody_events] == [
        CustodyAction.CAPTURED,
        CustodyAction.EXPORTED,
        CustodyAction.VERIFIED,
    ]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads") is None
