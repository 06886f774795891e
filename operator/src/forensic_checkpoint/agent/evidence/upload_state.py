"""The state file that lets a restarted agent resume one multipart upload (written atomically
after each part)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass
class UploadState:
    """What a restarted agent needs to continue one multipart upload."""

    bucket: str
    key: str
    upload_id: str
    part_size: int
    object_sha256: str
    object_size: int
    #: part number -> ETag, for parts the store acknowledged.
    parts: dict[int, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        data = {
            "version": STATE_VERSION,
            "bucket": self.bucket,
            "key": self.key,
            "uploadId": self.upload_id,
            "partSize": self.part_size,
            "objectSha256": self.object_sha256,
            "objectSize": self.object_size,
            "parts": {str(n): etag for n, etag in sorted(self.parts.items())},
        }
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> UploadState | None:
        try:
            data = json.loads(path.read_text())
            if data.get("version") != STATE_VERSION:
                return None
            return cls(
                bucket=data["bucket"],
                key=data["key"],
                upload_id=data["uploadId"],
                part_size=int(data["partSize"]),
                object_sha256=data["objectSha256"],
                object_size=int(data["objectSize"]),
                parts={int(n): str(e) for n, e in data["parts"].items()},
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable upload state %s: %s", path, exc)
            return None
