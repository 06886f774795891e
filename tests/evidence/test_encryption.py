"""age encryption on the node and decryption by the analyst, through a real object store."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pyrage import x25519

from forensic_checkpoint.agent.evidence import encryption
from forensic_checkpoint.agent.evidence.export import Exporter
from forensic_checkpoint.errors import ConfigError, EncryptedArchiveError

from .test_export import TARGET, config


def test_exported_object_decrypts_with_the_right_identity_only(  # noqa: PLR0917 - fixtures
    s3_endpoint: str,
    s3: Any,
    bucket: str,
    archive: tuple[Path, str],
    age_identity: tuple[Path, str],
    tmp_path: Path,
) -> None:
    path, sha = archive
    identity_file, recipient = age_identity
    exporter = Exporter(config(s3_endpoint, bucket, tmp_path / "state", recipients=(recipient,)))
    outcome = exporter.export(path, sha, TARGET, report_json=b'{"secret":"in memory"}')

    assert outcome.record.url.endswith(f"/{sha}.tar.age")
    assert outcome.record.encrypted
    assert outcome.record.archive_sha256 == sha != outcome.record.sha256
    key = outcome.record.url.removeprefix(f"s3://{bucket}/")
    downloaded = tmp_path / "downloaded.tar.age"
    s3.download_file(bucket, key, str(downloaded))
    body = downloaded.read_bytes()
    assert hashlib.sha256(body).hexdigest() == outcome.record.sha256
    assert encryption.is_age_encrypted(body[:64])
    assert path.read_bytes()[:4096] not in body, "plaintext must not leave the node"

    with encryption.decrypt_to_stream(downloaded, identity_file) as plain:
        digest = hashlib.sha256()
        while chunk := plain.read(1024 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == sha

    other = tmp_path / "other.key"
    other.write_text(f"{x25519.Identity.generate()}\n")
    with pytest.raises(EncryptedArchiveError, match="cannot be decrypted"):
        encryption.decrypt_to_stream(downloaded, other)

    report_key = (outcome.record.report_url or "").removeprefix(f"s3://{bucket}/")
    assert report_key.endswith(".report.json.age")
    report = s3.get_object(Bucket=bucket, Key=report_key)["Body"].read()
    assert b"in memory" not in report
    encrypted_report = tmp_path / "report.json.age"
    encrypted_report.write_bytes(report)
    with encryption.decrypt_to_stream(encrypted_report, identity_file) as plain_report:
        assert plain_report.read() == b'{"secret":"in memory"}'


def test_encrypt_file_hashes_the_ciphertext_and_leaves_no_partial(tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    source = tmp_path / "a.tar"
    source.write_bytes(b"checkpoint" * 100_000)
    result = encryption.encrypt_file(source, tmp_path / "a.tar.age", [identity.to_public()])
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert result.size_bytes == result.path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "a.tar.age"]


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")
def test_ssh_ed25519_keys_work_as_recipient_and_identity(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    source = tmp_path / "a.tar"
    source.write_bytes(b"x" * 1000)
    recipients = encryption.parse_recipients([key.with_suffix(".pub").read_text()])
    encrypted = encryption.encrypt_file(source, tmp_path / "a.tar.age", recipients)
    with encryption.decrypt_to_stream(encrypted.path, key) as plain:
        assert plain.read() == b"x" * 1000


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        ([], "no age recipient"),
        (["# only a comment", ""], "no age recipient"),
        (["age1notbech32"], "invalid age recipient"),
        (["AGE-SECRET-KEY-1ABC"], "not an age or ssh recipient"),
    ],
)
def test_bad_recipients_are_config_errors(lines: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        encryption.parse_recipients(lines)


def test_identity_files_are_checked(tmp_path: Path) -> None:
    empty = tmp_path / "empty.key"
    empty.write_text("# no key here\n")
    with pytest.raises(ConfigError, match="no age identity"):
        encryption.load_identities(empty)
    with pytest.raises(ConfigError, match="cannot read"):
        encryption.load_identities(tmp_path / "missing.key")
    bad = tmp_path / "bad.key"
    bad.write_text("AGE-SECRET-KEY-1NOTVALID\n")
    with pytest.raises(ConfigError, match="invalid identity"):
        encryption.load_identities(bad)


@pytest.mark.parametrize(
    ("head", "encrypted"),
    [
        (b"age-encryption.org/v1\n-> X25519 abc", True),
        (b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl", True),
        (b"\x28\xb5\x2f\xfd", False),  # zstd
        (b"checkpoint/\x00\x00", False),
    ],
)
def test_age_header_detection(head: bytes, encrypted: bool) -> None:
    assert encryption.is_age_encrypted(head) is encrypted


def test_decrypted_path_is_private_and_removed(
    age_identity: tuple[Path, str], tmp_path: Path
) -> None:
    identity_file, recipient = age_identity
    source = tmp_path / "c.tar.zst"
    source.write_bytes(b"\x28\xb5\x2f\xfd" + b"z" * 5000)
    recipients = encryption.parse_recipients([recipient])
    encrypted = encryption.encrypt_file(source, tmp_path / "c.tar.zst.age", recipients)
    with encryption.decrypted_path(encrypted.path, identity_file) as plain:
        assert plain.name == "c.tar.zst"
        assert plain.read_bytes() == source.read_bytes()
        assert plain.parent.stat().st_mode & 0o077 == 0
    assert not plain.exists()
    assert not plain.parent.exists()


def test_analyst_analyses_an_encrypted_archive_with_the_identity(
    age_identity: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent's encrypted export of a real checkpoint reads back with `analyze --identity`:
    the report is the plaintext archive's (sha256 and secret found); without the identity, or
    with another one, the CLI fails with one line and no report."""
    import json

    import zstandard

    from forensic_checkpoint.cli.main import main

    sample = Path(__file__).parents[1] / "data" / "counter-blog-crio.tar.zst"
    plain = tmp_path / "checkpoint.tar"
    with sample.open("rb") as src, plain.open("wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    sha = hashlib.sha256(plain.read_bytes()).hexdigest()
    identity_file, recipient = age_identity
    sealed = encryption.encrypt_file(
        plain, tmp_path / "checkpoint.tar.age", encryption.parse_recipients([recipient])
    ).path
    plain.unlink()  # only the ciphertext is left, as on the analyst's machine

    args = ["analyze", str(sealed), "-o", "json", "--search", "RANDOM_4105_KEY"]
    assert main([*args, "--identity", str(identity_file)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["archive"]["sha256"] == sha
    assert report["archive"]["path"] == str(sealed)
    hits = report["memory"]["searches"][0]["matches"]
    assert {m["pid"] for m in hits} == {6}

    assert main(args) == 1
    assert "age" in capsys.readouterr().err.lower()
    other = tmp_path / "other.key"
    other.write_text(f"{x25519.Identity.generate()}\n")
    assert main([*args, "--identity", str(other)]) == 1
    captured = capsys.readouterr()
    assert "cannot be decrypted" in captured.err
    assert captured.out == ""
