"""The operator's memory at rest after a start is the high-water mark of its first listing:
CPython keeps every memory arena the listing's bodies took (an object's few long-lived entries
pin them). kopf's defaults list every object in one response and keep each handled body for 5 s
in its idle worker, so all bodies were alive at once: with 10,000 kept archives 395 MiB of RSS
at rest, 140 with pages and short-lived workers (benchmarks/operator_memory.py).
"""

from __future__ import annotations

import kopf

from forensic_checkpoint.controller import runner


def _configured() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    runner.configure(settings)
    return settings


def test_the_first_listing_comes_in_pages() -> None:
    assert kopf.OperatorSettings().watching.chunk_size is None  # kopf's default: all at once
    assert _configured().watching.chunk_size == runner.LISTING_PAGE
    assert 0 < runner.LISTING_PAGE <= 500


def test_an_idle_worker_lets_go_of_its_body_within_a_second() -> None:
    assert kopf.OperatorSettings().queueing.idle_timeout == 5.0  # kopf's default
    assert _configured().queueing.idle_timeout == runner.WORKER_IDLE_SECONDS
    assert runner.WORKER_IDLE_SECONDS <= 1.0
