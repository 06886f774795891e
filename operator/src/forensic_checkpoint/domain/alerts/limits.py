"""Storm protection building blocks, on an injected monotonic clock (seconds)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    rate: float
    burst: int
    clock: Clock
    _tokens: float = field(init=False)
    _at: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 0:
            raise ValueError("rate and burst must not be negative")
        self._tokens = float(self.burst)
        self._at = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def available(self) -> bool:
        self._refill()
        return self._tokens >= 1.0

    def take(self) -> bool:
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def give_back(self) -> None:
        """Return a token taken for a capture that then could not be created."""
        self._tokens = min(float(self.burst), self._tokens + 1.0)


@dataclass
class ExpiringSet:
    """Keys remembered until their own deadline; bounded, oldest insertions evicted first
    (a storm of unique alerts must not grow the operator's memory without limit)."""

    clock: Clock
    max_entries: int = 100_000
    _deadlines: OrderedDict[Hashable, float] = field(default_factory=OrderedDict, init=False)

    def __contains__(self, key: Hashable) -> bool:
        deadline = self._deadlines.get(key)
        if deadline is None:
            return False
        if deadline <= self.clock():
            del self._deadlines[key]
            return False
        return True

    def remaining(self, key: Hashable) -> float:
        """Seconds until ``key`` is forgotten (0 when absent)."""
        deadline = self._deadlines.get(key)
        return max(0.0, deadline - self.clock()) if deadline is not None else 0.0

    def add(self, key: Hashable, ttl: float) -> None:
        if ttl <= 0:
            return
        self._deadlines.pop(key, None)
        self._deadlines[key] = self.clock() + ttl
        while len(self._deadlines) > self.max_entries:
            self._deadlines.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        self._deadlines.pop(key, None)

    def __len__(self) -> int:
        return len(self._deadlines)


@dataclass
class ActiveCaptures:
    """Captures started by the receiver and not yet seen finished.

    A capture counts from the moment it is decided (before the API call returns, so that
    concurrent requests cannot all slip under the cap). While its create is in flight it is
    *pending* and survives a list that does not show it yet (the list may have been taken
    before the create landed), for at most ``grace`` seconds. Once the create returned it is
    *confirmed*, and the first list that began after that and does not show it active ends it:
    a capture that finished is never counted on an older list's word.
    """

    clock: Clock
    grace: float = 30.0
    _pending: dict[str, float] = field(default_factory=dict, init=False)
    _confirmed: dict[str, float] = field(default_factory=dict, init=False)

    def add(self, key: str) -> None:
        self._pending[key] = self.clock()

    def confirm(self, key: str) -> None:
        """Its create returned: from now on a list that does not show it ends it."""
        if self._pending.pop(key, None) is not None:
            self._confirmed[key] = self.clock()

    def discard(self, key: str) -> None:
        self._pending.pop(key, None)
        self._confirmed.pop(key, None)

    def reconcile(self, active: set[str], listed_at: float | None = None) -> None:
        """Take the cluster's list, begun at ``listed_at`` (default now), as the truth for every
        capture confirmed before it began; keep pending captures within their grace; adopt
        active ones we did not know (captures started before an operator restart)."""
        now = self.clock()
        began = now if listed_at is None else listed_at
        self._pending = {
            key: at for key, at in self._pending.items() if key in active or now - at < self.grace
        }
        self._confirmed = {
            key: at for key, at in self._confirmed.items() if key in active or at > began
        }
        for key in active:
            if key not in self._pending:
                self._confirmed.setdefault(key, began)

    def __len__(self) -> int:
        return len(self._pending.keys() | self._confirmed.keys())
