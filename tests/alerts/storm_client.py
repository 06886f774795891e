"""An alert storm's sender, in a process of its own: it POSTs one notification to the receiver
while it polls ``/healthz``, and reports the answer and the gaps between two ``/healthz``
answers. In its own process, its own work (sending megabytes, decoding the answer) holds
neither the receiver's event loop nor its GIL, so the gaps are the receiver's alone; a loop
that decides thousands of alerts in one go shows as one long gap, whenever in the poll it falls.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROUTE = "/v1/alerts/alertmanager"


@dataclass(frozen=True)
class StormResult:
    status: int
    answer: dict[str, Any]
    #: Seconds between two /healthz answers while the POST was in flight, in order.
    gaps: list[float]

    @property
    def reasons(self) -> Counter[str]:
        return Counter(d["reason"] for d in self.answer.get("decisions", []))


def post_storm(url: str, token: str, body: bytes, *, timeout: float = 120.0) -> StormResult:
    """POST ``body`` to ``url`` + the Alertmanager route from a child process, polling.

    The receiver runs in this (the test's) process, whose heap after hundreds of tests dwarfs
    an operator's: a full garbage collection that the body's allocations set off would scan it
    all, holding the GIL for a third of a second. The objects that exist before the POST are
    frozen out of the collector (``gc.freeze``) for its length, so that the gaps measure the
    receiver's work and the collection of what it allocates.
    """
    gc.collect()
    gc.freeze()
    try:
        return _post(url, token, body, timeout)
    finally:
        gc.unfreeze()


def _post(url: str, token: str, body: bytes, timeout: float) -> StormResult:
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
