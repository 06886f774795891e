"""Operator memory at rest: the RSS of a freshly started operator with N kept archives.

A dev cluster (real kube-apiserver + etcd), fake node agents in this process, and ONE real
capture through a fake agent: its finished status (custody chain, analysis summary, timings,
archive) is the template. Then N ForensicCheckpoints are created directly in that finished,
kept state (the object with the operator's finalizer and annotations, then the Completed status
through the status subresource, each with its own node and capture key), so no capture runs.
For each N the operator is restarted and its RSS read once it is idle: what 10,000 kept
archives cost after a restart (issue 19's goal: under 300 MiB), and the slope per object. At the
largest N this tree's operator then stays up for ``--rest`` seconds at the default
``--archive-poll-interval`` (300 s) while the API server's ``apiserver_request_total`` is
counted, and again with the operator stopped: the difference is what the operator causes
(issue 19's goal: under 1 request per second).

The same, in the same run, for a baseline operator (``--baseline-rev``, from ``git archive``
on PYTHONPATH, as ``operator_scale --baseline-rev`` does). ``--trace`` starts the operator
with ``tracemalloc`` and writes its top live allocations at rest (a site hook, only here).
Every figure has the load average (1 min) beside it: the machine is shared.

    python -m benchmarks.operator_memory [--counts 0,2000,10000] [--baseline-rev 4c2b5b5]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.fleet_cluster import fleet_cluster
from benchmarks.operator_scale import (
    _baseline_tree,
    _cpu_seconds,
    _load,
    _requests,
    _rss_mib,
    _settle,
)

from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.stack import LocalStack

NAMESPACE = "memory"
BASE = f"/apis/forensic-checkpoint.dev/v1alpha1/namespaces/{NAMESPACE}/forensiccheckpoints"

#: A site hook for ``--trace``: SIGUSR1 writes what the allocators hold: malloc's arenas in use
#: and free (mallinfo2), pymalloc's live blocks and arenas (``sys._debugmallocstats``), the live
#: objects by type, and the RSS before and after ``malloc_trim(0)``. (tracemalloc slows the
#: operator's imports to minutes on this machine.)
_TRACE_HOOK = """
import ctypes, gc, os, signal, sys
class _Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
def _dump(*_):
    gc.collect()
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Info
    info = libc.mallinfo2()
    counts = {}
    for o in gc.get_objects():
        counts[type(o).__name__] = counts.get(type(o).__name__, 0) + 1
    with open(os.environ["FORENSIC_TRACE_OUT"], "w") as out:
        mib = 2 ** 20
        out.write(f"malloc arena {info.arena / mib:.1f} MiB, mmapped {info.hblkhd / mib:.1f} MiB, "
                  f"in use {info.uordblks / mib:.1f} MiB, free {info.fordblks / mib:.1f} MiB\\n")
        out.write(f"pymalloc live blocks {sys.getallocatedblocks()}\\n")
        out.write(f"gc objects {sum(counts.values())}: ")
        out.write(repr(sorted(counts.items(), key=lambda kv: -kv[1])[:30]) + "\\n")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(os.environ["FORENSIC_TRACE_OUT"] + ".pymalloc", flags)
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(fd)
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    before = rss()
    libc.malloc_trim(0)
    with open(os.environ["FORENSIC_TRACE_OUT"], "a") as out:
        out.write(f"rss before trim {before:.1f} MiB, after malloc_trim(0) {rss():.1f} MiB\\n")
signal.signal(signal.SIGUSR1, _dump)
"""


def _template(stack: LocalStack, pod: str) -> dict[str, Any]:
    """A real finished capture through a fake agent: the object whose state is cloned."""
    stack.create_checkpoint(NAMESPACE, "template", {"podName": pod})
    return stack.wait_phase(
        NAMESPACE,
        "template",
        ("Completed",),
        timeout=300,
        predicate=lambda o: (
            o["status"].get("archiveRetainedUntil") is not None or o["status"].get("containers")
        ),
    )


def _clone(
    template: dict[str, Any], name: str, node: str, index: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The object to create and the status to write for the ``index``-th kept archive."""
    meta = template["metadata"]
    body = {
        "apiVersion": template["apiVersion"],
        "kind": template["kind"],
        "metadata": {
            "name": name,
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
            "finalizers": list(meta.get("finalizers") or []),
        },
        "spec": template["spec"],
    }
    status = copy.deepcopy(template["status"])
    old_node = status.get("nodeName", "")
    text = json.dumps(status).replace(old_node, node) if old_node else json.dumps(status)
    status = json.loads(text)
    for c in status.get("containers") or []:
        if c.get("captureKey"):
            c["captureKey"] = f"{c['captureKey'][:-8]}{index:08d}"
    return body, status


def _populate(api: Any, template: dict[str, Any], nodes: list[str], have: int, want: int) -> float:
    """Create objects ``have`` .. ``want``-1; the seconds it took."""
    started = time.monotonic()

    def one(i: int) -> None:
        body, status = _clone(template, f"kept-{i:05d}", nodes[i % len(nodes)], i)
        created = apiserver.request(api, "POST", BASE, body)
        created["status"] = status
        apiserver.request(api, "PUT", f"{BASE}/{body['metadata']['name']}/status", created)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(have, want)))
    return round(time.monotonic() - started, 1)


def _measure(
    stack: LocalStack,
    count: int,
    pythonpath: str | None,
    trace: Path | None,
    env: dict[str, str],
    *,
    rest: tuple[Any, float] | None = None,
) -> dict[str, Any]:
    """Start the operator (``pythonpath`` first on its path), wait until idle, read its RSS;
    with ``rest`` (an administrator's client, seconds), then count its API requests."""
    names = ("PYTHONPATH", "FORENSIC_TRACE_OUT", *env)
    saved = {k: os.environ.get(k) for k in names}
    hook = str(trace.parent) if trace else None
    paths = [p for p in (pythonpath, hook, saved["PYTHONPATH"]) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    if trace is not None:
        os.environ["FORENSIC_TRACE_OUT"] = str(trace)
    os.environ.update(env)
    try:
        stack.start_operator([NAMESPACE], wait=300)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert stack.operator_process is not None
    pid = stack.operator_process.pid
    settle = _settle(pid, 900)
    peak = _peak_mib(pid)
    time.sleep(10)  # the first sweep of the kept archives (10 s after the start)
    _settle(pid, 120)
    result: dict[str, Any] = {
        "checkpoints": count,
        "settleSeconds": settle,
        "rssMiB": round(_rss_mib(pid), 1),
        "peakRssMiB": max(peak, _peak_mib(pid)),
        "loadAverage": _load(),
    }
    if rest is not None:
        api, seconds = rest
        cpu = _cpu_seconds(pid)
        with_operator = _rates(api, seconds)
        result["rest"] = {
            "seconds": seconds,
            "operatorCpuPercent": round(100 * (_cpu_seconds(pid) - cpu) / seconds, 2),
            "rssMiB": round(_rss_mib(pid), 1),
            "loadAverage": _load(),
        }
    if trace is not None:
        os.kill(pid, signal.SIGUSR1)
        time.sleep(20)
    stack.stop()
    if rest is not None:
        # The same window without the operator: what the rest of the cluster asks (the fake
        # agents' heartbeats, the dev signer, kube-controller-manager, the API server's own
        # Lease). The difference is what the operator causes, the agents' reviews of its
        # token included.
        without = _rates(api, min(seconds, 300.0))
        caused = {k: with_operator.get(k, 0.0) - without.get(k, 0.0) for k in with_operator}
        result["rest"].update(
            {
                "apiRequestsPerSecond": round(sum(with_operator.values()), 3),
                "withoutOperatorPerSecond": round(sum(without.values()), 3),
                "operatorCausedPerSecond": round(sum(caused.values()), 3),
                "operatorCausedByRequest": {
                    k: round(v, 3) for k, v in sorted(caused.items(), key=lambda kv: -kv[1]) if v
                },
            }
        )
    return result


def _rates(api: Any, seconds: float) -> dict[str, float]:
    """API requests per second over ``seconds``, by verb, resource and subresource."""
    before = _requests(api)
    time.sleep(seconds)
    delta = _requests(api) - before
    return {" ".join(p for p in key if p): n / seconds for key, n in delta.items() if n}


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _slope(rows: list[dict[str, Any]]) -> dict[str, Any]:
    first, last = rows[0], rows[-1]
    if last["checkpoints"] == first["checkpoints"]:
        return {}
    per = (last["rssMiB"] - first["rssMiB"]) / (last["checkpoints"] - first["checkpoints"])
    return {
        "rssPerObjectKiB": round(per * 1024, 2),
        "rssAt10000MiB": round(first["rssMiB"] + (10000 - first["checkpoints"]) * per, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--counts", default="0,2000,10000")
    parser.add_argument("--baseline-rev", default="4c2b5b5", help="'' for no baseline")
    parser.add_argument("--trace", type=Path, help="a directory for allocator dumps at rest")
    parser.add_argument(
        "--variant", action="append", default=[],
        help="NAME:KEY=VALUE,...: this tree's operator again with that environment",
    )  # fmt: skip
    parser.add_argument(
        "--rest", type=float, default=630.0,
        help="seconds of API requests counted at the largest count, this tree only (the "
        "kept-archive sweep runs every 300 s: 630 s holds two), then up to 300 s without the "
        "operator",
    )  # fmt: skip
    args = parser.parse_args(argv)
    counts = sorted(int(c) for c in args.counts.split(","))
    result: dict[str, Any] = {"nodes": args.nodes, "loadAverageAtStart": os.getloadavg()}
    with fleet_cluster("operator-memory-", NAMESPACE, args.nodes, node_prefix="mem") as env:
        stack = env.stack
        stack.archive_poll_interval = 300.0
        stack.start_operator([NAMESPACE])
        template = _template(stack, env.pods[0])
        stack.stop()
        apiserver.request(env.api, "DELETE", f"{BASE}/template")  # no finalizer run: stopped
        apiserver.request(env.api, "PATCH", f"{BASE}/template", {"metadata": {"finalizers": []}})
        result["templateStatusBytes"] = len(json.dumps(template["status"]))
        nodes = [f"mem-{i:03d}" for i in range(args.nodes)]
        old_src = None
        if args.baseline_rev:
            old_src = str(_baseline_tree(args.baseline_rev, env.work / "baseline"))
        if args.trace:
            args.trace.mkdir(parents=True, exist_ok=True)
            (args.trace / "sitecustomize.py").write_text(_TRACE_HOOK)
        runs: list[tuple[str, str | None, dict[str, str]]] = [("new", None, {})]
        if old_src is not None:
            runs.append(("old", old_src, {}))
        for variant in args.variant:
            name, _, assignments = variant.partition(":")
            pairs = (a.split("=", 1) for a in assignments.split(",") if a)
            runs.append((name, None, dict(pairs)))
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in runs}
        have = 0
        for count in counts:
            create = _populate(env.api, template, nodes, have, count)
            have = count
            for which, path, extra in runs:
                trace = args.trace / f"{which}-{count}.txt" if args.trace else None
                last = which == "new" and count == counts[-1] and args.rest > 0
                rest = (env.api, args.rest) if last else None
                row = _measure(stack, count, path, trace, extra, rest=rest)
                row["createSeconds"] = create
                rows[which].append(row)
                print(json.dumps({which: row}), flush=True)
        for name, found in rows.items():
            result[name] = {"rows": found, **_slope(found)}
        if old_src is not None:
            result["old"]["rev"] = args.baseline_rev
        result["goalMiB"] = 300
        result["loadAverageAtEnd"] = os.getloadavg()
        print(json.dumps(result, indent=2))
        return 0


if __name__ == "__main__":
    sys.exit(main())
