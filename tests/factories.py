"""Shared builders for the tests: the objects many test modules build again and again.

Import them as ``from tests.factories import ...``. A builder takes the few fields a test cares
about and fills the rest with plain, valid defaults; anything the code under test decides stays
in the test. Heavy libraries (boto3, zstandard) are imported where they are used, so that a test
module pays for them only when it calls the builder.
"""

from __future__ import annotations

import hashlib
import json
import os
import socketserver
import struct
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from forensic_checkpoint.agent.capture.analysis_runner import Analyzer
from forensic_checkpoint.agent.capture.service import CaptureService, Checkpointer
from forensic_checkpoint.agent.jobs import JobStore
from forensic_checkpoint.api.custody import (
    Actor,
    ActorKind,
    CustodyAction,
    CustodyEntry,
    EvidenceTarget,
)
from forensic_checkpoint.domain.evidence import custody

DATA = Path(__file__).resolve().parent / "data"

# --- files and processes ---------------------------------------------------------------------


def plain_sample(name: str, directory: Path) -> Path:
    """``tests/data/<name>.tar.zst`` as the kubelet writes it (a plain tar) in ``directory``."""
    import zstandard

    out = directory / f"{name}.tar"
    with (DATA / f"{name}.tar.zst").open("rb") as src, out.open("wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    return out


def random_archive(path: Path, size: int) -> tuple[Path, str]:
    """``size`` random bytes at ``path``, with their sha256."""
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def run_script(script: Path, settings: dict[str, Any], path: Path) -> subprocess.Popen[str]:
    """Start ``script`` in a child Python (a process the test can kill at any point) that reads
    its settings from the JSON file ``path``; stdout and stderr are piped."""
    path.write_text(json.dumps(settings))
    return subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """Serve in a daemon thread that checks for ``shutdown()`` every 50 ms (the default 0.5 s
    makes every test's teardown wait that long)."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return thread


# --- S3 (moto's server) ----------------------------------------------------------------------


def s3_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    """A plain boto3 client for a test's own look at the store (not the exporter's)."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=BotoConfig(s3={"addressing_style": "path"}),
    )


def export_values(
    directory: Path, endpoint: str, bucket: str, access_key: str, secret_key: str, **more: Any
) -> Path:
    """An agent values file exporting to ``bucket`` with the credentials in files beside it, as
    the chart mounts them; ``more`` adds top-level sections (``retention=...``)."""
    (directory / "key-id").write_text(f"{access_key}\n")
    (directory / "secret").write_text(f"{secret_key}\n")
    values = directory / "agent-values.yaml"
    export = {
        "endpoint": endpoint,
        "bucket": bucket,
        "cluster": "dev",
        "accessKeyIdFile": str(directory / "key-id"),
        "secretAccessKeyFile": str(directory / "secret"),
    }
    values.write_text(yaml.safe_dump({"export": export, **more}))
    return values


# --- the agent -------------------------------------------------------------------------------


def capture_service(
    state: Path,
    kubelet: Checkpointer,
    checkpoints: Path,
    analyzer: Analyzer,
    **options: Any,
) -> CaptureService:
    """The capture service of ``node-1``, keeping its jobs in ``state`` and calling ``kubelet``;
    ``options`` are CaptureService's tuning arguments (workers, windows, poll interval)."""
    return CaptureService(
        node_name="node-1",
        store=JobStore(state),
        kubelet=lambda: kubelet,
        analyzer=analyzer,
        checkpoint_dir=checkpoints,
        **options,
    )


# --- evidence and custody --------------------------------------------------------------------


def evidence_target(  # noqa: PLR0917 - the fields of a capture, in the order a user names them
    uid: str, namespace: str, pod: str, container: str, checkpoint: str, node: str = "node-a"
) -> EvidenceTarget:
    """The capture of ``container`` by the ForensicCheckpoint ``checkpoint`` (uid ``uid``)."""
    return EvidenceTarget(
        namespace=namespace,
        pod=pod,
        container=container,
        capture_key=f"{uid}-{container}",
        node=node,
        checkpoint_name=checkpoint,
        checkpoint_uid=uid,
    )


def requested(
    subject: str, at: datetime, *, by: str = "alice@example.com", uid: str | None = None
) -> list[CustodyEntry]:
    """A new custody chain: the user ``by`` asked for the capture."""
    actor = Actor(kind=ActorKind.USER, name=by, uid=uid)
    return custody.append([], subject, action=CustodyAction.REQUESTED, at=at, actor=actor)


def by_agent(
    chain: list[CustodyEntry],
    subject: str,
    action: CustodyAction,
    at: datetime,
    agent: str = "node-a",
    **fields: Any,
) -> list[CustodyEntry]:
    """``chain`` with one more entry, written by the agent of node ``agent``."""
    actor = Actor(kind=ActorKind.AGENT, name=agent)
    return custody.append(chain, subject, action=action, at=at, actor=actor, **fields)


# --- CRIU images -----------------------------------------------------------------------------

IMG_COMMON = 0x54564319  # criu/include/magic.h


def criu_image(magic: int, records: list[bytes]) -> bytes:
    """An image as pycriu frames it: u32 IMG_COMMON, u32 magic, then records of a u32
    little-endian length and a protobuf payload."""
    out = bytearray(struct.pack("<II", IMG_COMMON, magic))
    for rec in records:
        out += struct.pack("<I", len(rec)) + rec
    return bytes(out)


def varint(value: int) -> bytes:
    """A protobuf varint (for fields the pycriu messages lack)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def image_records(blob: bytes) -> tuple[int, list[bytes]]:
    """The magic and protobuf records of a CRIU image made only of records (not pages,
    tcp-stream or ghost-file images, which carry raw bytes after their entry)."""
    magic, pos, records = struct.unpack_from("<I", blob, 4)[0], 8, []
    while pos < len(blob):
        (size,) = struct.unpack_from("<I", blob, pos)
        records.append(blob[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return magic, records


def edited_sample(name: str, directory: Path, edit: Any, label: str = "edited") -> Path:
    """``tests/data/<name>.tar.zst`` as a plain tar in ``directory`` after ``edit(members)``
    changed its members (a dict member name -> bytes, in archive order; new members go last).

    For a shape no committed real archive shows: the edit must change only what a real kernel
    and CRIU would have written differently, and the test says why it needs one."""
    import io
    import tarfile

    with tarfile.open(plain_sample(name, directory)) as tar:
        infos = {m.name: m for m in tar.getmembers()}
        members = {
            m.name: (tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in infos.values()
        }
    edit(members)
    out = directory / f"{name}-{label}.tar"
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members.items():
            info = infos.get(member) or tarfile.TarInfo(member)
            info.size = len(data) if not info.isdir() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out
