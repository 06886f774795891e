"""`forensic-checkpoint verify` on objects downloaded from a real S3-compatible server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.factories import by_agent, random_archive

from forensic_checkpoint.agent.evidence import encryption
from forensic_checkpoint.agent.evidence.export import Exporter, ExportOutcome
from forensic_checkpoint.api.custody import CustodyAction
from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.cli import verify
from forensic_checkpoint.cli.main import main
from forensic_checkpoint.errors import NotFoundError

from .test_export import TARGET, captured_chain, config


def download(s3: Any, bucket: str, url: str, dest: Path) -> Path:
    s3.download_file(bucket, url.removeprefix(f"s3://{bucket}/"), str(dest))
    return dest


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, str]:
    """Smaller than the export tests' archive: two parts are enough here."""
    return random_archive(tmp_path / "checkpoint.tar", 6 * 1024 * 1024)


@pytest.fixture
def exported(  # noqa: PLR0917 - fixtures
    s3_endpoint: str,
    s3: Any,
    bucket: str,
    archive: tuple[Path, str],
    age_identity: tuple[Path, str],
    tmp_path: Path,
) -> tuple[ExportOutcome, Path, Path]:
    """An encrypted export; returns the outcome and the downloaded object and sidecar."""
    path, sha = archive
    _, recipient = age_identity
    cfg = config(s3_endpoint, bucket, tmp_path / "state", recipients=(recipient,))
    outcome = Exporter(cfg).export(path, sha, TARGET, chain=captured_chain(sha))
    obj = download(s3, bucket, outcome.record.url, tmp_path / "evidence.tar.age")
    sidecar = download(s3, bucket, outcome.record.manifest_url or "", tmp_path / "evidence.json")
    return outcome, obj, sidecar


def test_downloaded_object_verifies_against_its_sidecar(
    exported: tuple[ExportOutcome, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    outcome, obj, sidecar = exported
    assert main(["verify", str(obj), "--sidecar", str(sidecar)]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {outcome.record.sha256} matches the exported object" in out
    assert "4 entries verify" in out


def test_with_the_identity_the_plaintext_is_checked_too(
    exported: tuple[ExportOutcome, Path, Path],
    age_identity: tuple[Path, str],
    archive: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, obj, sidecar = exported
    identity, _ = age_identity
    assert main(["verify", str(obj), "--sidecar", str(sidecar), "--identity", str(identity)]) == 0
    assert f"decrypted sha256 {archive[1]} matches" in capsys.readouterr().out


def test_a_decrypted_copy_verifies_as_the_captured_archive(
    exported: tuple[ExportOutcome, Path, Path],
    age_identity: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, obj, sidecar = exported
    plain = tmp_path / "plain.tar"
    with plain.open("wb") as out:
        encryption.decrypt_to_file(obj, age_identity[0], out)
    assert main(["verify", str(plain), "--sidecar", str(sidecar)]) == 0
    assert "matches the archive as captured" in capsys.readouterr().out


def test_a_changed_byte_is_a_mismatch(
    exported: tuple[ExportOutcome, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, obj, sidecar = exported
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))
    assert main(["verify", str(obj), "--sidecar", str(sidecar)]) == 1
    assert "matches no recorded hash" in capsys.readouterr().err


def test_an_edited_sidecar_chain_is_a_mismatch(
    exported: tuple[ExportOutcome, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, obj, sidecar = exported
    manifest = json.loads(sidecar.read_text())
    manifest["custody"][0]["actor"]["name"] = "mallory@example.com"
    sidecar.write_text(json.dumps(manifest))
    assert main(["verify", str(obj), "--sidecar", str(sidecar)]) == 1
    assert "custody: entry 0: content does not match its hash" in capsys.readouterr().err


def test_a_sidecar_with_its_last_entries_cut_is_a_mismatch(
    exported: tuple[ExportOutcome, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, obj, sidecar = exported
    manifest = json.loads(sidecar.read_text())
    manifest["custody"] = manifest["custody"][:-1]
    sidecar.write_text(json.dumps(manifest))
    assert main(["verify", str(obj), "--sidecar", str(sidecar)]) == 1
    assert "head does not match" in capsys.readouterr().err


def test_unreadable_inputs_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text("{}")
    assert main(["verify", str(tmp_path / "a.tar"), "--sidecar", str(bogus)]) == 1
    assert "not an evidence manifest" in capsys.readouterr().err


def _checkpoint_object(chain: list[Any]) -> dict[str, Any]:
    """A ForensicCheckpoint as the API server returns it, with status.custody filled."""
    return {
        "apiVersion": "forensic-checkpoint.dev/v1alpha1",
        "kind": "ForensicCheckpoint",
        "metadata": {"name": "web-incident", "namespace": "shop", "uid": TARGET.checkpoint_uid},
        "spec": {"podName": "web"},
        "status": {
            "containers": [{"name": "app", "captureKey": TARGET.capture_key}],
            "custody": [e.to_kube() for e in chain],
        },
    }


def test_record_from_a_checkpoint_status(
    exported: tuple[ExportOutcome, Path, Path], archive: tuple[Path, str]
) -> None:
    outcome, obj, _ = exported
    chain = by_agent(
        outcome.custody,
        TARGET.custody_subject,
        CustodyAction.DELETED,
        datetime(2026, 12, 28, tzinfo=UTC),
        reason="RetentionMaxAge",
    )
    record = verify.record_from_checkpoint(
        ForensicCheckpoint.model_validate(json.loads(json.dumps(_checkpoint_object(chain))))
    )
    assert record.subject == TARGET.checkpoint_uid
    assert record.captured_sha256s == {archive[1]}
    assert record.object_sha256s == {outcome.record.sha256}
    assert verify.check(obj, record, None) == []
    assert verify.check(archive[0], record, None) == []

    forged = _checkpoint_object(chain)
    forged["status"]["custody"][1]["sha256"] = "f" * 64
    forged_record = verify.record_from_checkpoint(ForensicCheckpoint.model_validate(forged))
    problems = verify.check(archive[0], forged_record, None)
    assert "custody: entry 1: content does not match its hash" in problems
    assert any("matches no recorded hash" in p for p in problems)

    with pytest.raises(NotFoundError, match="no custody"):
        verify.record_from_checkpoint(
            ForensicCheckpoint.model_validate(
                {"metadata": {"name": "new"}, "spec": {"podName": "web"}, "status": {}}
            )
        )
