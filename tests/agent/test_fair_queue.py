"""The agent's work queue is fair across namespaces, and a container's jobs wait for it without
a worker (issue 15, item 3)."""

from __future__ import annotations

import threading
import time

from forensic_checkpoint.agent.capture.call_spacing import CallSpacer
from forensic_checkpoint.agent.capture.fair_queue import FairQueue


def _drain(queue: FairQueue[str]) -> list[str]:
    taken: list[str] = []
    while len(queue):
        item = queue.get()
        assert item is not None
        taken.append(item)
    return taken


def test_lanes_take_turns_and_each_lane_is_first_in_first_out() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(50):
        queue.put("noisy", f"noisy-{n}")
    queue.put("quiet", "quiet-0")
    queue.put("other", "other-0")
    queue.put("quiet", "quiet-1")
    taken = _drain(queue)
    # The quiet namespaces wait for one noisy job each turn, not for all 50.
    assert taken[:6] == ["noisy-0", "quiet-0", "other-0", "noisy-1", "quiet-1", "noisy-2"]
    assert [t for t in taken if t.startswith("noisy")] == [f"noisy-{n}" for n in range(50)]
    assert len(taken) == 53


def test_a_lane_that_empties_and_returns_waits_its_turn() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.put("a", "a0")
    queue.put("b", "b0")
    queue.put("b", "b1")
    assert queue.get() == "a0"  # lane a is empty now
    queue.put("a", "a1")  # behind b, which was waiting
    assert _drain(queue) == ["b0", "a1", "b1"]


def test_get_waits_for_an_item_and_close_ends_the_wait() -> None:
    queue: FairQueue[str] = FairQueue()
    got: list[str | None] = []
    reader = threading.Thread(target=lambda: got.append(queue.get()))
    reader.start()
    time.sleep(0.1)
    assert got == []  # still waiting
    queue.put("a", "a0")
    reader.join(5)
    assert got == ["a0"]
    waiting = [threading.Thread(target=lambda: got.append(queue.get())) for _ in range(2)]
    for thread in waiting:
        thread.start()
    queue.put("a", "left-behind")
    time.sleep(0.1)
    queue.close()
    for thread in waiting:
        thread.join(5)
        assert not thread.is_alive()
    assert got[1:] in (["left-behind", None], [None, "left-behind"])
    queue.put("a", "after-close")
    assert queue.get() is None  # a closed queue hands out nothing (jobs stay on disk)


def test_a_busy_container_queues_its_jobs_in_order_until_released() -> None:
    spacer: CallSpacer[str] = CallSpacer(min_gap=0.3)
    assert spacer.admit("ns/pod/app", "first") is True
    assert spacer.admit("ns/pod/app", "second") is False
    assert spacer.admit("ns/pod/app", "third") is False
    assert spacer.admit("ns/other/app", "elsewhere") is True  # another container: at once
    assert spacer.waiting() == 2
    assert spacer.release("ns/pod/app") == "second"  # the next one holds the container now
    assert 0.2 < spacer.gap("ns/pod/app") <= 0.3  # and calls a gap after the last call
    assert spacer.release("ns/pod/app") == "third"
    assert spacer.release("ns/pod/app") is None
    assert spacer.admit("ns/pod/app", "fourth") is True
    assert spacer.waiting() == 0
    time.sleep(0.3)
    assert spacer.gap("ns/pod/app") == 0.0
    assert spacer.gap("ns/never/app") == 0.0
