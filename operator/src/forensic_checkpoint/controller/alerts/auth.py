"""Bearer-token check against a token file (a mounted Secret key).

The file is re-read when its modification time changes, so rotating the Secret needs no
restart (the kubelet swaps the mounted file atomically). Comparison is constant-time.
"""

from __future__ import annotations

import contextlib
import hmac
from pathlib import Path

from forensic_checkpoint.errors import ConfigError


class TokenFile:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime_ns = -1
        self._token = b""
        self._load()

    def _load(self) -> None:
        try:
            stat = self._path.stat()
            if stat.st_mtime_ns == self._mtime_ns:
                return
            token = self._path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read alert token file {self._path}: {exc}") from exc
        if len(token) < 16:
            raise ConfigError(f"alert token in {self._path} is shorter than 16 bytes")
        self._token, self._mtime_ns = token, stat.st_mtime_ns

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the current token."""
        if not authorization:
            return False
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        with contextlib.suppress(ConfigError):  # a file mid-rotation: keep the token we had
            self._load()
        return hmac.compare_digest(presented.strip().encode(), self._token)
