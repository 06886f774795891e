"""Who may call the agent: the operator's ServiceAccount (and, to download, the archive reader),
proven by a real TokenReview of a
token issued for this node's agent audience (``api.agent.agent_audience``): the operator's
API-server token, or a token meant for another node's agent, is refused with 401.

Results are cached for a few seconds by token hash: the operator polls every job, and a
TokenReview per poll would load the API server for nothing. Denials are cached too (briefly),
so a caller hammering with a bad token cannot turn the agent into a TokenReview amplifier.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from forensic_checkpoint.errors import ClusterError

#: token -> (authenticated, username); raises ClusterError when the review cannot be made.
TokenReviewer = Callable[[str], tuple[bool, str]]

_MAX_CACHE = 256


@dataclass(frozen=True)
class AuthDecision:
    """HTTP status to answer with (200 = allowed), the reason and who the caller was."""

    status: int
    reason: str
    username: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


class Authenticator:
    """``expected_identity`` (the operator) may do everything; ``readers`` (the archive-reader
    ServiceAccount an analyst's ``kubectl forensic get-archive`` asks a token for) may only
    download an archive or a report."""

    def __init__(
        self,
        reviewer: TokenReviewer,
        expected_identity: str,
        *,
        readers: frozenset[str] = frozenset(),
        cache_seconds: float = 10.0,
    ) -> None:
        self._review = reviewer
        self.expected_identity = expected_identity
        self.readers = readers
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, tuple[bool, str] | None]] = {}
        self._lock = threading.Lock()

    def check(self, authorization: str | None, *, read_only: bool = False) -> AuthDecision:
        """The decision for an ``Authorization`` header value on a ``read_only`` route or not."""
        if not authorization:
            return AuthDecision(401, "Unauthenticated")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return AuthDecision(401, "Unauthenticated")
        review = self._reviewed(token)
        if review is None:
            # Not the caller's fault, and not cached: the next request tries again.
            return AuthDecision(503, "AuthenticationUnavailable")
        authenticated, username = review
        if not authenticated:
            return AuthDecision(401, "Unauthenticated")
        if username == self.expected_identity or (read_only and username in self.readers):
            return AuthDecision(200, "Allowed", username)
        return AuthDecision(403, "Forbidden", username)

    def _reviewed(self, token: str) -> tuple[bool, str] | None:
        """``(authenticated, username)``, cached by token hash; ``None`` if no review could be
        made."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None and cached[0] > now:
                return cached[1]
        try:
            review = self._review(token)
        except ClusterError:
            return None
        with self._lock:
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[digest] = (now + self.cache_seconds, review)
        return review
