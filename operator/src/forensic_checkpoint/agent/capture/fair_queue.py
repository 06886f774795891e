"""A blocking work queue that is fair across lanes (the agent's lanes are pod namespaces).

Items are handed out round-robin over the lanes that have work, first in, first out within a
lane: a namespace that queued 50 captures delays another namespace's first capture by at most
one item, not by 50. A lane that empties and gets work again queues behind the lanes waiting now.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        #: Lanes with work, in turn order (a dict keeps insertion order): the next item comes
        #: from the first lane, which then moves to the end.
        self._lanes: dict[str, deque[T]] = {}
        self._size = 0
        self._closed = False
        self._changed = threading.Condition()

    def put(self, lane: str, item: T) -> None:
        with self._changed:
            self._lanes.setdefault(lane, deque()).append(item)
            self._size += 1
            self._changed.notify()

    def get(self) -> T | None:
        """The next item, waiting for one; ``None`` once the queue is closed (items still
        queued then are dropped: the agent's jobs are on disk, and the next start queues them)."""
        with self._changed:
            while not self._lanes and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
            lane = next(iter(self._lanes))
            items = self._lanes.pop(lane)
            item = items.popleft()
            if items:
                self._lanes[lane] = items  # its next item waits for every other lane's turn
            self._size -= 1
            return item

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return self._size
