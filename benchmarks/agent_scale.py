"""Agent scale (issue 19, part 4): one agent with 200 kept archives and a 64-capture burst.

ONE agent process (:mod:`benchmarks.agent_scale_node`: the real capture service, job store on
a temporary state directory, analysis children, orphan keeper and HTTP server) against a fake
kubelet calibrated on the real node (each call 1.3 s, not serialised, a real sample archive
written). The 200 kept archives are one real capture's job record, report and archive, cloned
(archives hard-linked). Then 64 capture requests arrive at once: 48 from one noisy namespace,
4 from each of four others. Each request is followed as the operator follows it: a waiting
status request while the job is Queued or Capturing, then a poll every second; meanwhile the
operator's sweep (``GET /v1/captures``) every 2 s and a Prometheus scrape every 5 s.

Scenarios, in one run: the fair queue with 200 kept archives; the baseline FIFO order (one
lane); the burst without kept archives (the per-kept-archive memory); the disk floor crossed
mid-burst (a node disk with room for 20 archives above the floor); a queue bound of a quarter
of the burst (``--max-queued-captures``: the rest answered 503 and asked again, as the
operator does). Printed: the agent's RSS
at rest before and after the burst and its peak (VmHWM), the analysis children's peak, each
namespace's first kubelet call after the burst start, request -> Completed p50/p99, the
refusals past the floor and what was left on disk, the load average beside each figure.

    python -m benchmarks.agent_scale [--kept 200] [--burst 64] [--latency 1.3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.agent_scale_node import TOKEN
from benchmarks.capture_load import _percentile

from forensic_checkpoint_dev.kubelet.config import prepare_default_archive

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "counter-blog.tar.zst"
WAIT = "Queued,Capturing"
TERMINAL = {"Completed", "Failed"}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                children = [int(c) for c in task.read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


class Agent:
    """The agent process of one scenario and an HTTP client for it."""

    def __init__(self, work: Path, archive: Path, latency: float, **extra: Any) -> None:
        self.work = work
        self.config = {
            "stateDir": str(work / "state"),
            "checkpointDir": str(work / "checkpoints"),
            "archive": str(archive),
            "latency": latency,
            "readyFile": str(work / "ready.json"),
            "stopFile": str(work / "stop"),
            "resultFile": str(work / "result.json"),
            **extra,
        }
        (work / "checkpoints").mkdir(parents=True, exist_ok=True, mode=0o700)
        (work / "config.json").write_text(json.dumps(self.config))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.agent_scale_node", str(work / "config.json")],
            stdout=(work / "agent.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        ready = work / "ready.json"
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not start: {(work / 'agent.log').read_text()}")
            time.sleep(0.1)
        self.port = json.loads(ready.read_text())["port"]
        self.children_peak_kib = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while self._sampling:
            total = 0
            for child in _descendants(self.proc.pid):
                try:
                    total += _proc_kib(child, "VmRSS")
                except OSError:
                    continue
            self.children_peak_kib = max(self.children_peak_kib, total)
            time.sleep(0.2)

    def rss_mib(self) -> float:
        return round(_proc_kib(self.proc.pid, "VmRSS") / 1024, 1)

    def peak_mib(self) -> float:
        return round(_proc_kib(self.proc.pid, "VmHWM") / 1024, 1)

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = 60
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": f"Bearer {TOKEN}", "Connection": "close"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw
        finally:
            conn.close()

    def stop(self) -> dict[str, Any]:
        self._sampling = False
        (self.work / "stop").touch()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        result = self.work / "result.json"
        return json.loads(result.read_text()) if result.exists() else {}


def request(key: str, namespace: str, pod: str) -> dict[str, Any]:
    return {
        "key": key,
        "checkpointUid": f"uid-{key}",
        "checkpointNamespace": namespace,
        "checkpointName": f"fcp-{key}",
        "podNamespace": namespace,
        "podName": pod,
        "container": "counter",
    }


def follow(agent: Agent, body: dict[str, Any], delay: float = 0.0) -> dict[str, Any]:
    """Submit (after ``delay`` seconds) and follow one capture as the operator does; its final
    status and the answers that refused it for now (503, or a connection closed at accept)."""
    refused, busy = 0, 0
    time.sleep(delay)
    while True:
        try:
            status, answer = agent.call("POST", "/v1/captures", body)
        except OSError:
            status, answer = 0, None
        if status in (200, 202):
            break
        refused += 1
        busy += status == 503
        time.sleep(5.0 if status == 503 else 1.0)  # Retry-After
    key = body["key"]
    while answer.get("state") not in TERMINAL:
        query = f"?waitWhile={WAIT}&timeoutSeconds=20" if answer.get("state") in WAIT else ""
        if not query:
            time.sleep(1.0)
        try:
            status, fresh = agent.call("GET", f"/v1/captures/{key}{query}")
        except OSError:
            time.sleep(1.0)
            continue
        if status == 200:
            answer = fresh
    return {**answer, "refused": refused, "queueFull": busy}


def seed(work: Path, archive: Path, latency: float, kept: int) -> Path:
    """A state and checkpoint directory with ``kept`` Completed jobs (one real capture, cloned)."""
    agent = Agent(work, archive, latency)
    try:
        final = follow(agent, request("seed-0", "kept", "kept-0"))
    finally:
        agent.stop()
    if final["state"] != "Completed":
        raise RuntimeError(f"the seed capture failed: {final}")
    state, checkpoints = work / "state", work / "checkpoints"
    template = (state / "jobs" / "seed-0.json").read_text()
    original = Path(final["archive"]["path"])
    report = state / "reports" / "seed-0.json"
    for n in range(1, kept):
        key = f"seed-{n}"
        copy = checkpoints / original.name.replace("kept-0", f"kept-{n}")
        os.link(original, copy)
        text = template.replace("seed-0", key).replace(original.name, copy.name)
        (state / "jobs" / f"{key}.json").write_text(text.replace("kept-0", f"kept-{n}"))
        os.link(report, state / "reports" / f"{key}.json")
    return work


def clone(seeded: Path | None, work: Path) -> None:
    if seeded is None:
        return
    shutil.copytree(seeded / "state", work / "state")
    shutil.copytree(seeded / "checkpoints", work / "checkpoints", copy_function=os.link)


def burst_plan(burst: int) -> list[tuple[str, str]]:
    """(namespace, pod): three quarters from one noisy namespace, the rest 4 per namespace."""
    noisy = burst * 3 // 4
    plan = [("noisy", f"noisy-{n}") for n in range(noisy)]
    quiet = burst - noisy
    plan += [(f"quiet-{n // 4}", f"quiet-{n}") for n in range(quiet)]
    return plan


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_scenario(
    name: str,
    root: Path,
    seeded: Path | None,
    archive: Path,
    args: argparse.Namespace,
    **extra: Any,
) -> dict[str, Any]:
    work = root / name
    work.mkdir()
    clone(seeded, work)
    agent = Agent(work, archive, args.latency, **extra)
    sweeps: list[float] = []
    stop_sweeping = threading.Event()

    def sweep() -> None:
        beat = 0
        while not stop_sweeping.wait(2.0):
            started = time.monotonic()
            agent.call("GET", "/v1/captures")
            if beat % 3 == 0:
                agent.call("GET", "/metrics")
            beat += 1
            sweeps.append(time.monotonic() - started)

    try:
        time.sleep(2.0)
        agent.call("GET", "/v1/captures")
        agent.call("GET", "/metrics")
        rest_before = {"rssMiB": agent.rss_mib(), "load": _load()}
        plan = burst_plan(args.burst)
        sweeper = threading.Thread(target=sweep, daemon=True)
        sweeper.start()
        start = time.time()
        with ThreadPoolExecutor(len(plan)) as pool:
            finals = list(
                pool.map(
                    # At once, the noisy namespace's first: the worst case for the quiet ones.
                    lambda item: follow(
                        agent,
                        request(f"{name}-{item[0]}-{item[1]}", item[0], item[1]),
                        0.0 if item[0] == "noisy" else 0.3,
                    ),
                    plan,
                )
            )
        burst_seconds = time.time() - start
        load_burst = _load()
        stop_sweeping.set()
        sweeper.join()
        time.sleep(3.0)
        rest_after = {"rssMiB": agent.rss_mib(), "load": _load()}
        peak = agent.peak_mib()
        children_peak = round(agent.children_peak_kib / 1024, 1)
        left = _left_on_disk(work, finals)
    finally:
        node = agent.stop()
    first_call: dict[str, float] = {}
    for (namespace, _), final in zip(plan, finals, strict=True):
        if final.get("startedAt"):
            at = _ts(final["startedAt"]) - start
            first_call[namespace] = min(first_call.get(namespace, at), at)
    done = [_ts(f["finishedAt"]) - start for f in finals if f["state"] == "Completed"]
    reasons: dict[str, int] = defaultdict(int)
    for final in finals:
        reasons[final.get("reason") or final["state"]] += 1
    return {
        "scenario": name,
        "restBefore": rest_before,
        "peakRssMiB": peak,
        "analysisChildrenPeakMiB": children_peak,
        "restAfter": rest_after,
        "burstSeconds": round(burst_seconds, 1),
        "loadAfterBurst": load_burst,
        "firstKubeletCallSeconds": {k: round(v, 2) for k, v in sorted(first_call.items())},
        "requestToCompletedSeconds": {
            "p50": round(_percentile(done, 0.5), 2) if done else None,
            "p99": round(_percentile(done, 0.99), 2) if done else None,
            "count": len(done),
        },
        "outcomes": dict(reasons),
        "refusedAnswers": sum(f["refused"] for f in finals),
        "queueFullAnswers": sum(f["queueFull"] for f in finals),
        "sweepSeconds": {
            "p50": round(_percentile(sweeps, 0.5), 3) if sweeps else None,
            "max": round(max(sweeps), 3) if sweeps else None,
        },
        **left,
        **node,
    }


def _left_on_disk(work: Path, finals: list[dict[str, Any]]) -> dict[str, Any]:
    """Archives no Completed job of the burst or the seed accounts for, and temporary files."""
    claimed = {Path(f["archive"]["path"]).name for f in finals if f.get("archive")}
    seeded = {p.name for p in (work / "checkpoints").glob("*kept-*")}
    stray = [
        p.name
        for p in (work / "checkpoints").iterdir()
        if p.name not in claimed and p.name not in seeded
    ]
    temporary = [str(p.relative_to(work)) for p in (work / "state").rglob("*.tmp")]
    return {"strayArchives": stray, "temporaryFiles": temporary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kept", type=int, default=200)
    parser.add_argument("--burst", type=int, default=64)
    parser.add_argument("--latency", type=float, default=1.3, help="seconds per kubelet call")
    parser.add_argument("--above-floor", type=int, default=20, help="archives that fit")
    parser.add_argument(
        "--scenarios", default="fair,fifo,empty,floor,bounded", help="comma-separated subset"
    )
    args = parser.parse_args(argv)
    wanted = args.scenarios.split(",")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="agent-scale-") as tmp:
        root = Path(tmp)
        archive = prepare_default_archive(SAMPLE, root / "sample.tar")
        seeded = seed(root / "seed", archive, args.latency, args.kept)
        size = archive.stat().st_size
        print(f"seeded {args.kept} kept archives of {size} bytes, load {_load()}", flush=True)
        floor = 64 * size
        for name in wanted:
            extra: dict[str, Any] = {}
            base: Path | None = seeded
            if name == "fifo":
                extra["fifo"] = True
            elif name == "empty":
                base = None
            elif name == "bounded":  # a queue bound below the burst: 503, retried
                extra["maxQueued"] = args.burst // 4
            elif name == "floor":
                used = size  # the kept archives are hard links of one file
                extra = {"minFreeBytes": floor, "capacity": used + floor + args.above_floor * size}
            result = run_scenario(name, root, base, archive, args, **extra)
            if name == "floor":
                result["floorBytes"] = floor
                lowest = result.get("lowestFreeBytes")
                result["floorHeld"] = lowest is None or lowest >= floor
            results.append(result)
            print(json.dumps(result, indent=2), flush=True)
    print(json.dumps({"summary": _summary(results, args.kept, args.burst)}, indent=2))
    return 0


def _summary(results: list[dict[str, Any]], kept: int, burst: int) -> dict[str, Any]:
    by = {r["scenario"]: r for r in results}
    summary: dict[str, Any] = {"load": _load()}
    if "fair" in by and "empty" in by:
        per_kept = (by["fair"]["restBefore"]["rssMiB"] - by["empty"]["restBefore"]["rssMiB"]) / kept
        summary["rssPerKeptArchiveKiB"] = round(per_kept * 1024, 1)
    if "fair" in by:
        fair = by["fair"]
        per_job = (fair["peakRssMiB"] - fair["restBefore"]["rssMiB"]) / burst
        summary["peakRssPerBurstJobKiB"] = round(per_job * 1024, 1)
    return summary


if __name__ == "__main__":
    sys.exit(main())
