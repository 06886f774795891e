"""An alert storm's sender, in a process of its own: it POSTs one notification to the receiver
while it polls ``/healthz``, and reports the answer and the gaps between two ``/healthz``
answers. In its own process, its own work (sending megabytes, decoding the answer) holds
neither the receiver's event loop nor its GIL, so the gaps are the receiver's alone; a loop
that decides thousands of alerts in one go shows as one long gap, whenever in the poll it falls.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROUTE = "/v1/alerts/alertmanager"
#: The longest gap between two /healthz answers a storm may cause, as a share of the longest gap
#: the same body causes with the receiver's slicing off (``one_go``: decided in one go, as before
#: the slices), both measured in the same test. A machine busy with other work (parallel test
#: workers, builds) stretches both alike, where a bound in seconds would fail there. Idle, the
#: sliced gaps were 0.03-0.09 s and the one-go stall 0.33-0.55 s (0.37-0.8 s against the dev
#: cluster): a share of at most 0.27.
STALL_SHARE = 0.5


@dataclass(frozen=True)
class StormResult:
    status: int
    answer: dict[str, Any]
    #: Seconds between two /healthz answers while the POST was in flight, in order.
    gaps: list[float]

    @property
    def reasons(self) -> Counter[str]:
        return Counter(d["reason"] for d in self.answer.get("decisions", []))

    def assert_loop_kept_serving(self, one_go: StormResult) -> None:
        """The longest gap is a small share of the stall ``one_go`` (the same body, decided
        without slices, just now) showed."""
        longest, stall = max(self.gaps), max(one_go.gaps)
        assert longest < STALL_SHARE * stall, (
            f"longest /healthz gap {longest:.3f} s; in one go {stall:.3f} s",
            sorted(self.gaps)[-5:],
        )


@contextlib.contextmanager
def one_go() -> Iterator[None]:
    """The receiver in this process decides a body's alerts without yielding to its loop."""
    from forensic_checkpoint.controller.alerts import receiver

    sliced = receiver.SLICE_SECONDS
    receiver.SLICE_SECONDS = math.inf
    try:
        yield
    finally:
        receiver.SLICE_SECONDS = sliced


def post_storm(url: str, token: str, body: bytes, *, timeout: float = 120.0) -> StormResult:
    """POST ``body`` to ``url`` + the Alertmanager route from a child process, polling.

    The receiver runs in this process, whose garbage collector is off meanwhile: a full
    collection of the test process (about 0.1 s, set off by the body's allocations) holds the
    GIL whatever thread runs it, and the gaps measured must be the receiver's own stalls."""
    gc.collect()
    gc.disable()
    try:
        return _post_storm(url, token, body, timeout)
    finally:
        gc.enable()


def _post_storm(url: str, token: str, body: bytes, timeout: float) -> StormResult:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "body.json"
        path.write_bytes(body)
        done = subprocess.run(
            [sys.executable, __file__, url, str(path)],
            input=token,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    result = json.loads(done.stdout)
    return StormResult(result["status"], result["answer"], result["gaps"])


def _main(url: str, path: str) -> None:
    import requests

    token = sys.stdin.read().strip()
    body = Path(path).read_bytes()
    answer: dict[str, Any] = {}

    def post() -> None:
        response = requests.post(
            url + ROUTE,
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=110,
        )
        answer.update(status=response.status_code, answer=response.json())

    with requests.Session() as session:
        session.get(url + "/healthz", timeout=10)  # connected before the body goes out
        sender = threading.Thread(target=post)
        sender.start()
        gaps: list[float] = []
        last = time.perf_counter()
        while sender.is_alive():
            assert session.get(url + "/healthz", timeout=30).status_code == 200
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
            time.sleep(0.005)
        sender.join()
    print(json.dumps({**answer, "gaps": gaps}))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
