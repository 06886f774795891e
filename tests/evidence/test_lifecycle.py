"""The whole life of one real capture: requested, captured, exported encrypted, verified, removed
by retention, and checked afterwards by an analyst. Uses a real CRIU archive from tests/data and
the S3 server on loopback."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.factories import by_agent, evidence_target, requested

from forensic_checkpoint.agent.evidence.export import Exporter
from forensic_checkpoint.api.custody import (
    CustodyAction,
    KubeletResponse,
)
from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.cli import verify
from forensic_checkpoint.domain.evidence import custody
from forensic_checkpoint.domain.evidence.retention import (
    ArchiveRecord,
    Limits,
    RetentionPolicy,
    on_checkpoint_deleted,
    plan_retention,
)

from .test_export import config

DATA = Path(__file__).resolve().parents[1] / "data"
TARGET = evidence_target(
    "0b5f7a36-2c1e-4d0a-8f7e-5a3d2c1b0a99", "blog", "counter-blog-0", "counter", "counter-incident"
)


def test_custody_over_the_whole_life_of_a_capture(  # noqa: PLR0917 - fixtures
    s3_endpoint: str,
    s3: Any,
    bucket: str,
    age_identity: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    identity_file, recipient = age_identity
    node_dir = tmp_path / "node-a" / "checkpoints"
    node_dir.mkdir(parents=True)
    archive = node_dir / "checkpoint-counter-blog-0_blog-counter.tar"
    shutil.copyfile(DATA / "counter-blog.tar.zst", archive)
    t0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    subject = TARGET.custody_subject  # the CR's uid: one chain per ForensicCheckpoint

    # 1. requested: the user who created the ForensicCheckpoint
    chain = requested(subject, t0, uid="8d1c")
    # 2. captured: the node, the kubelet's answer, the sha256 at capture
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    chain = by_agent(
        chain,
        subject,
        CustodyAction.CAPTURED,
        t0 + timedelta(seconds=4),
        node="node-a",
        kubelet=KubeletResponse(status_code=200, message=str(archive)),
        sha256=sha,
        size_bytes=archive.stat().st_size,
    )
    # 3. exported, encrypted, and verified by reading it back
    exporter = Exporter(
        config(s3_endpoint, bucket, tmp_path / "state", recipients=(recipient,)),
        clock=lambda: t0 + timedelta(seconds=9),
    )
    outcome = exporter.export(archive, sha, TARGET, report_json=b"{}", chain=chain)
    assert (outcome.parts_uploaded, outcome.parts_skipped) == (1, 0)
    chain = outcome.custody

    # 4. retention on the node: a newer capture of the same container pushes it out
    newer = ArchiveRecord(
        key="newer",
        node="node-a",
        namespace="blog",
        pod="counter-blog-0",
        container="counter",
        created=t0 + timedelta(days=1),
        size_bytes=10,
    )
    ours = ArchiveRecord(
        key=TARGET.capture_key,
        node="node-a",
        namespace="blog",
        pod="counter-blog-0",
        container="counter",
        created=t0,
        size_bytes=archive.stat().st_size,
        exported=True,
    )
    plan = plan_retention(
        [newer, ours],
        RetentionPolicy(container_default=Limits(max_count=1), protect_unexported=True),
        now=t0 + timedelta(days=2),
    )
    assert plan.delete_keys == [TARGET.capture_key]
    archive.unlink()
    chain = by_agent(
        chain,
        subject,
        CustodyAction.DELETED,
        t0 + timedelta(days=2),
        node="node-a",
        reason=str(plan.delete[0].bound),
        message=plan.delete[0].detail,
    )

    assert [e.action for e in chain] == [
        CustodyAction.REQUESTED,
        CustodyAction.CAPTURED,
        CustodyAction.EXPORTED,
        CustodyAction.VERIFIED,
        CustodyAction.DELETED,
    ]
    assert custody.verify_chain(chain, subject).ok

    # 5. later, an analyst downloads the object and checks it against the CR's status
    downloaded = tmp_path / "analyst" / "evidence.tar.age"
    downloaded.parent.mkdir()
    s3.download_file(bucket, outcome.record.url.removeprefix(f"s3://{bucket}/"), str(downloaded))
    fcp = ForensicCheckpoint.model_validate(
        {
            "metadata": {"name": "counter-incident", "uid": TARGET.checkpoint_uid},
            "spec": {"podName": "counter"},
            "status": {"custody": [e.to_kube() for e in chain]},
        }
    )
    record = verify.record_from_checkpoint(fcp)
    assert verify.check(downloaded, record, identity_file) == []
    assert "decrypted sha256 " + sha + " matches" in capsys.readouterr().out

    # 6. the CR is deleted: an exported archive may go; a held one that exists nowhere else stays
    assert on_checkpoint_deleted(ours).delete
    held_only_here = dataclasses.replace(ours, exported=False, held=True)
    assert not on_checkpoint_deleted(held_only_here).delete


@pytest.mark.skipif(shutil.which("age") is None, reason="needs the age command (Debian: age)")
def test_the_age_command_reads_our_objects_and_we_read_its(
    s3_endpoint: str, s3: Any, bucket: str, age_identity: tuple[Path, str], tmp_path: Path
) -> None:
    """Interoperability with the reference implementation: `age -d` is how analysts decrypt."""
    from forensic_checkpoint.agent.evidence import encryption

    identity_file, recipient = age_identity
    archive = tmp_path / "a.tar"
    shutil.copyfile(DATA / "multi-proc.tar.zst", archive)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    cfg = config(s3_endpoint, bucket, tmp_path / "state", recipients=(recipient,))
    outcome = Exporter(cfg).export(archive, sha, TARGET)
    obj = tmp_path / "obj.tar.age"
    s3.download_file(bucket, outcome.record.url.removeprefix(f"s3://{bucket}/"), str(obj))
    plain = subprocess.run(
        ["age", "-d", "-i", str(identity_file), str(obj)], check=True, capture_output=True
    ).stdout
    assert hashlib.sha256(plain).hexdigest() == sha

    by_age = tmp_path / "by-age.tar.age"
    subprocess.run(["age", "-r", recipient, "-o", str(by_age), str(archive)], check=True)
    with encryption.decrypt_to_stream(by_age, identity_file) as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == sha
