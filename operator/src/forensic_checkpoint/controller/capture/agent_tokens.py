"""The operator's tokens for the node agents: one per node, for that node's audience.

A token the operator sends to an agent is issued by the TokenRequest API for
``agent_audience(node)``. The API server does not accept it, and neither does any other node's
agent, so whoever receives it (the agent, or an endpoint a compromised node pointed at itself)
can use it for nothing but that node. Tokens are kept until 80 % of their lifetime has passed,
so a busy node costs one TokenRequest per lifetime, not one per call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from forensic_checkpoint.agent_identity import agent_audience

#: ``audience -> token`` (a blocking call to the API server; run off the event loop).
TokenIssuer = Callable[[str], str]

_RENEW_AT = 0.8


class AgentTokens:
    def __init__(
        self,
        issue: TokenIssuer,
        lifetime_seconds: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issue = issue
        self._lifetime = lifetime_seconds
        self._clock = clock
        self._tokens: dict[str, tuple[float, str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, node_name: str) -> str:
        """A token for the agent of ``node_name`` (``ClusterError`` if none can be issued)."""
        lock = self._locks.setdefault(node_name, asyncio.Lock())
        async with lock:  # one TokenRequest per node at a time, even when many daemons ask
            cached = self._tokens.get(node_name)
            if cached is not None and cached[0] > self._clock():
                return cached[1]
            started = self._clock()
            token = await asyncio.to_thread(self._issue, agent_audience(node_name))
            self._tokens[node_name] = (started + _RENEW_AT * self._lifetime, token)
            return token

    def forget(self, node_name: str) -> None:
        """Drop the cached token (the agent refused it: issue a new one next time)."""
        self._tokens.pop(node_name, None)
