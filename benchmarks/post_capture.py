"""Post-capture time on the real node: how soon after the kubelet's answer a 2 GiB capture is
Completed, and where the time goes (``make bench-realnode``).

Starts the dev cluster with the real node (real kubelet, containerd, runc, CRIU), the operator
and the node's agent as local processes, fills a container with 2 GiB of non-zero memory and
captures it ``--runs`` times. For each run it prints the stage timings from the status
(queued, kubelet, hash, analysis, report) and the ratio of creation -> Completed to the
kubelet call's own duration (goal: <= 1.3). Creation is the moment the create request was
sent; ``creationTimestamp`` has whole seconds only, truncated, so the ratio from it (printed
beside) is up to a second too long.

Baseline, in the same run on the last capture's archive: the analysis as it was before the
agent handed its digest over (the analysis hashed the archive again) against the analysis now
(read once), and the agent's hash alone.

    python -m benchmarks.post_capture [--runs 3] [--gib 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.realnode.support import NAMESPACE, RealNodeEnv, real_node_env

from forensic_checkpoint import analysis
from forensic_checkpoint.analysis.format.file_hash import sha256_file

GOAL = 1.3
POD = "bigmem"
STAGES = ("queuedMs", "kubeletMs", "hashMs", "analysisMs", "reportMs")


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _capture(env: RealNodeEnv, name: str) -> dict[str, Any]:
    obj = env.capture(name, {"podName": POD}, timeout=600)
    status = obj["status"]
    if status.get("phase") != "Completed":
        raise SystemExit(f"{name}: {status.get('phase')}: {status.get('message')}")
    return obj


def _run(env: RealNodeEnv, index: int) -> tuple[dict[str, int], float, float, str]:
    """The stage timings, creation -> Completed from the create request (this clock: the
    operator and this process share the machine) and from ``creationTimestamp`` (whole seconds,
    truncated: up to a second too long), and the archive's path."""
    sent = time.time()
    obj = _capture(env, f"post-capture-{index}")
    status = obj["status"]
    container = status["containers"][0]
    timings: dict[str, int] = container["timings"]
    completed = _ts(status["completedAt"])
    total = completed.timestamp() - sent
    stamped = (completed - _ts(obj["metadata"]["creationTimestamp"])).total_seconds()
    return timings, total, stamped, container["archive"]["path"]


def _baseline(archive: Path) -> tuple[float, float, float]:
    """(hash alone, analysis hashing again, analysis with the known digest) in seconds."""
    started = time.monotonic()
    digest = sha256_file(archive)
    hashed = time.monotonic() - started
    started = time.monotonic()
    analysis.analyze(archive, analysis.AnalyzerOptions())
    again = time.monotonic() - started
    started = time.monotonic()
    analysis.analyze(archive, analysis.AnalyzerOptions(known_digest=digest))
    once = time.monotonic() - started
    return hashed, again, once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gib", type=int, default=2)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="fc-post-capture-"))
    ratios: list[float] = []
    with real_node_env(root) as env:
        env.memory_hog(POD, args.gib)
        print(f"{args.gib} GiB container, {args.runs} captures; load {os.getloadavg()[0]:.1f}")
        print(
            f"{'run':>4} "
            + " ".join(f"{s:>11}" for s in STAGES)
            + "   total  ratio  (from creationTimestamp)"
        )
        archive = ""
        for index in range(args.runs):
            timings, total, stamped, archive = _run(env, index)
            kubelet = timings["kubeletMs"] / 1000
            ratio = total / kubelet
            ratios.append(ratio)
            cells = " ".join(f"{timings.get(s, 0):>11}" for s in STAGES)
            print(
                f"{index:>4} {cells} {total:>6.2f}s {ratio:>6.2f}  "
                f"({stamped:.2f} s, {stamped / kubelet:.2f})"
            )
            if index < args.runs - 1:
                env.stack.delete_checkpoint(NAMESPACE, f"post-capture-{index}")
        hashed, again, once = _baseline(Path(archive))
        print(
            f"baseline on the last archive: hash {hashed:.2f} s; analysis hashing again "
            f"{again:.2f} s, reading once {once:.2f} s (x{again / once:.2f})"
        )
        env.delete_pod(POD)
    median = statistics.median(ratios)
    verdict = "met" if median <= GOAL else "NOT met"
    print(f"creation -> Completed / kubelet call: median {median:.2f} (goal <= {GOAL}): {verdict}")
    return 0 if median <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
