"""The export's settings (chart values ``export.*``) and the object keys they lead to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from forensic_checkpoint.agent.evidence import encryption
from forensic_checkpoint.api.custody import EvidenceTarget
from forensic_checkpoint.errors import ConfigError

MIB = 1024 * 1024
#: S3's smallest part (all parts but the last); its largest part count.
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000

_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ExportConfig:
    """Per-cluster settings (chart values ``export.*``); :meth:`with_overrides` fills in values
    read later, such as the credentials. The chart mounts the credentials Secret as files
    (``accessKeyIdFile``/``secretAccessKeyFile``, read by ``agent.values``); credentials left
    ``None`` come from boto3's usual chain."""

    bucket: str
    state_dir: Path
    endpoint_url: str | None = None
    region: str = "us-east-1"
    prefix: str = "forensic-checkpoint"
    cluster: str = "default"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    #: age recipients (``age1...`` or ssh public keys); empty: the archive goes unencrypted.
    recipients: tuple[str, ...] = ()
    part_size: int = 8 * MIB
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    #: Identity recorded as the actor of Exported/Verified custody entries.
    node_name: str = ""
    #: Upload the archive beside its analysis, once hashed (``duringAnalysis``), rather than
    #: after Completed. Off by default: measured, it did not make the export sooner where the
    #: upload takes longer than the analysis, and it delayed Completed (docs/evidence.md).
    during_analysis: bool = False

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ConfigError("export bucket is empty")
        if self.part_size < MIN_PART_SIZE:
            raise ConfigError(f"export partSize must be >= {MIN_PART_SIZE} bytes")
        for segment in [*self.prefix.split("/"), self.cluster]:
            if not _PATH_SEGMENT.match(segment):
                raise ConfigError(f"export prefix/cluster segment {segment!r} is not allowed")
        if self.max_attempts < 1:
            raise ConfigError("export maxAttempts must be >= 1")

    @classmethod
    def from_values(
        cls, values: Mapping[str, Any], *, state_dir: Path, node_name: str = ""
    ) -> ExportConfig:
        """From the chart's camelCase ``export`` values."""
        try:
            return cls(
                bucket=str(values["bucket"]),
                state_dir=state_dir,
                endpoint_url=values.get("endpoint") or None,
                region=str(values.get("region", "us-east-1")),
                prefix=str(values.get("prefix", "forensic-checkpoint")).strip("/"),
                cluster=str(values.get("cluster", "default")),
                recipients=tuple(values.get("ageRecipients", ()) or ()),
                part_size=int(values.get("partSizeMiB", 8)) * MIB,
                max_attempts=int(values.get("maxAttempts", 6)),
                during_analysis=_flag(values.get("duringAnalysis", False)),
                node_name=node_name,
            )
        except KeyError as exc:
            raise ConfigError(f"export values miss {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"export values are invalid: {exc}") from exc

    def with_overrides(self, **changes: Any) -> ExportConfig:
        """A per-ForensicCheckpoint variant (e.g. another prefix or recipient)."""
        return replace(self, **changes)

    @property
    def encrypt(self) -> bool:
        return bool(self.recipients)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"export duringAnalysis must be true or false, not {value!r}")
    return value


def object_key(config: ExportConfig, target: EvidenceTarget, archive_sha256: str) -> str:
    """The archive's key; the report and manifest keys share its stem."""
    for segment in (target.namespace, target.pod, target.container, target.capture_key):
        if not _PATH_SEGMENT.match(segment):
            raise ConfigError(f"cannot name an object after {segment!r}")
    if not _SHA256.match(archive_sha256):
        raise ConfigError("archive sha256 must be 64 lower-case hex digits")
    suffix = ".tar" + (encryption.SUFFIX if config.encrypt else "")
    return "/".join(
        [
            config.prefix,
            config.cluster,
            target.namespace,
            target.pod,
            target.container,
            target.capture_key,
            archive_sha256 + suffix,
        ]
    )
