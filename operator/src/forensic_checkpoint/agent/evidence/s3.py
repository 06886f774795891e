"""The S3 client and the retries around each of its calls.

Each call is retried with exponential backoff and jitter on connection errors, timeouts, 5xx and
throttling; 4xx answers fail at once, as :class:`S3RequestError` with S3's error code.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from forensic_checkpoint.agent.evidence.export_config import ExportConfig
from forensic_checkpoint.errors import ExportError

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def make_client(config: ExportConfig) -> Any:
    """A boto3 S3 client for ``config``: path-style addressing (MinIO and friends), short
    connect timeout, and botocore's own retries kept low because :func:`retry` retries."""
    session = boto3.session.Session(
        aws_access_key_id=config.access_key_id,
        aws_secret_access_key=config.secret_access_key,
        region_name=config.region,
    )
    return session.client(
        "s3",
        endpoint_url=config.endpoint_url,
        config=BotoConfig(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            # Not every S3-compatible store accepts the CRC trailers newer botocore adds.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


_RETRYABLE_CODES = {
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
}


class S3RequestError(ExportError):
    """The store refused a request (4xx) or kept failing; ``code`` is S3's error code."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _describe(exc: Exception) -> tuple[str, int | None, bool]:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        retryable = code in _RETRYABLE_CODES or (isinstance(status, int) and status >= 500)
        return code, status, retryable
    return type(exc).__name__, None, True  # connection errors, timeouts


def backoff_delays(config: ExportConfig, rng: random.Random | None = None) -> list[float]:
    """Sleeps between attempts: exponential, capped, with jitter in [50%, 100%]."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    return [
        min(config.backoff_max_seconds, config.backoff_base_seconds * 2**n)
        * (0.5 + rng.random() / 2)
        for n in range(config.max_attempts - 1)
    ]


def retry(
    config: ExportConfig,
    what: str,
    call: Callable[[], _T],
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    delays = backoff_delays(config)
    for attempt in range(config.max_attempts):
        try:
            return call()
        except (BotoCoreError, ClientError) as exc:
            code, status, retryable = _describe(exc)
            if not retryable or attempt == config.max_attempts - 1:
                tries = f" after {attempt + 1} attempts" if retryable else ""
                raise S3RequestError(
                    f"{what}: {code} {status or ''}{tries}".rstrip(), code=code, status=status
                ) from exc
            log.warning(
                "%s failed (%s); retry %d in %.1fs", what, code, attempt + 1, delays[attempt]
            )
            sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover
