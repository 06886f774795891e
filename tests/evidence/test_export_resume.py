"""An export killed half way (SIGKILL, like a node agent OOM-killed or its pod deleted)
completes after a restart without sending the finished parts again."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pyrage
import pytest
from pyrage import x25519
from tests.factories import run_script

from forensic_checkpoint.agent.evidence import encryption
from forensic_checkpoint.agent.evidence.upload_state import UploadState

from .conftest import ACCESS_KEY, SECRET_KEY
from .test_export import TARGET

CHILD = Path(__file__).with_name("upload_child.py")
TOTAL_PARTS = 5  # 23 MiB in 5 MiB parts


def kill_after_parts(proc: subprocess.Popen[str], parts: int) -> list[str]:
    """SIGKILL ``proc`` once it reports ``parts`` finished parts; returns what it printed."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while len(seen) < parts and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.strip())
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reap it and close its pipes
    assert proc.returncode == -signal.SIGKILL
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_killed_export_resumes_without_resending_parts(  # noqa: PLR0917 - pytest fixtures
    s3_endpoint: str,
    s3: Any,
    bucket: str,
    archive: tuple[Path, str],
    tmp_path: Path,
    encrypted: bool,
) -> None:
    path, sha = archive
    identity = x25519.Identity.generate()
    state_dir = tmp_path / "state"
    settings: dict[str, Any] = {
        "endpoint": s3_endpoint,
        "bucket": bucket,
        "stateDir": str(state_dir),
        "archive": str(path),
        "sha256": sha,
        "accessKey": ACCESS_KEY,
        "secretKey": SECRET_KEY,
        "recipients": [str(identity.to_public())] if encrypted else [],
        "partDelay": 0.5,
        "target": TARGET.to_kube(),
    }

    first = run_script(CHILD, settings, tmp_path / "first.json")
    # Killed while part 2 is stored but not yet recorded (the child pauses after the store
    # answered): the hardest moment, part 1 is recorded, part 2 exists only on the server.
    printed = kill_after_parts(first, 2)
    assert printed == ["part 1", "part 2"]

    state = UploadState.load(state_dir / f"{TARGET.capture_key}.upload.json")
    assert state is not None
    done_before = set(state.parts)
    assert done_before == {1}
    listed = s3.list_parts(Bucket=bucket, Key=state.key, UploadId=state.upload_id)["Parts"]
    assert {p["PartNumber"] for p in listed} == {1, 2}
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0, "nothing completed yet"

    second = run_script(CHILD, {**settings, "partDelay": 0}, tmp_path / "second.json")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    lines = out.strip().splitlines()
    resent = {int(line.split()[1]) for line in lines if line.startswith("part ")}
    result = json.loads(lines[-1])

    assert resent == {2, 3, 4, 5}, "part 1 was recorded and must not be sent again"

    assert (result["skipped"], result["uploaded"]) == (len(done_before), len(resent))

    key = result["url"].removeprefix(f"s3://{bucket}/")
    assert key == state.key
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == result["sha256"]
    if encrypted:
        assert encryption.is_age_encrypted(body[:64])
        plain = hashlib.sha256(pyrage.decrypt(body, [identity])).hexdigest()
        assert plain == sha
    else:
        assert result["sha256"] == sha
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads") is None
    assert not list(state_dir.iterdir())


@pytest.mark.slow
def test_memory_stays_bounded_by_the_part_size(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """A 64 MiB archive goes up with Python allocations peaking near two 5 MiB parts (the part
    being sent and botocore's view of it), measured in the uploading process alone."""
    path = tmp_path / "big.tar"
    digest = hashlib.sha256()
    with path.open("wb") as sink:
        for _ in range(64):
            block = os.urandom(1024 * 1024)
            digest.update(block)
            sink.write(block)
    settings = {
        "endpoint": s3_endpoint,
        "bucket": bucket,
        "stateDir": str(tmp_path / "state"),
        "archive": str(path),
        "sha256": digest.hexdigest(),
        "accessKey": ACCESS_KEY,
        "secretKey": SECRET_KEY,
        "partDelay": 0,
        "target": TARGET.to_kube(),
    }
    child = run_script(CHILD, settings, tmp_path / "big.json")
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["uploaded"] == 13
    print(f"peak Python allocations: {result['peakBytes'] / 2**20:.1f} MiB for a 64 MiB archive")
    assert result["peakBytes"] < 3 * 5 * 1024 * 1024
