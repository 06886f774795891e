"""Operator scale: 100 fake nodes, thousands of ForensicCheckpoints created in bursts, then kept.

A dev cluster (real kube-apiserver + etcd), the RBAC of deploy/rbac, the operator as a local
process, and 100 fake node agents in this process (``forensic_checkpoint_dev.fake_agents``: the
real agent HTTP server, TLS and token review; captures complete after 0.5 s without a kubelet).
One Running pod per node; the ForensicCheckpoints are created in bursts spread over the nodes.
It measures, for the operator of this tree and then, on the same objects, for the operator of
``--baseline-rev`` (the per-object daemon design):

* the operator's RSS and CPU, at rest and in bursts;
* API requests per second at the API server (``apiserver_request_total`` from ``/metrics``), in
  bursts and at rest, total and without the agents' heartbeats and this benchmark's own calls;
* watch/queue latency (create -> the operator's first pass, ``status.custody[0].at``) and
  create -> Completed, p50/p99;
* a retention deletion on a node reaching the status (``archiveDeleted``) at rest;
* at rest again after a restart of each operator (the figures the ratios compare: a burst's
  memory stays with the process as a high-water mark).

Both operators run with ``--archive-poll-interval`` (30 s here, 300 s by default, stated in the
output): the rates at rest of the per-object design scale with 1/interval.

Every figure has the load average (1 min, ``os.getloadavg``) it was measured under beside it:
the machine is shared. A burst also says where its captures waited: create -> the operator's
first pass -> the request to the agent (``requestedAt``) -> the agent's end of the capture
(``finishedAt``) -> Completed.

    python -m benchmarks.operator_scale [--nodes 100] [--count 2000] [--burst-size 1000]
    python -m benchmarks.operator_scale --count 10000   # 10 bursts; no baseline (--baseline run)
    python -m benchmarks.operator_scale --baseline-rev 1016309   # against another design
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from benchmarks.capture_load import _percentile, _ts
from benchmarks.fleet_cluster import fleet_cluster

from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.fake_agents import FakeAgentFleet
from forensic_checkpoint_dev.repo import REPO_ROOT
from forensic_checkpoint_dev.stack import LocalStack

NAMESPACE = "scale"
BASE = f"/apis/forensic-checkpoint.dev/v1alpha1/namespaces/{NAMESPACE}/forensiccheckpoints"
_PAGE = 4096


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _requests(api: ApiClient) -> Counter[tuple[str, str, str]]:
    """``apiserver_request_total`` summed by (verb, resource, subresource)."""
    prepared = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    response = api.call_api(*prepared, _request_timeout=30)
    text = response.read().decode()  # type: ignore[no-untyped-call]
    counts: Counter[tuple[str, str, str]] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split('",') if "=" in part)
        clean = {k: v.strip('"') for k, v in labels.items()}
        key = (clean.get("verb", ""), clean.get("resource", ""), clean.get("subresource", ""))
        counts[key] += int(float(value))
    return counts


class Window:
    """API requests, operator CPU and RSS over a stretch of time."""

    def __init__(self, api: ApiClient, pid: int) -> None:
        self.api, self.pid = api, pid
        self.own = 0  # this benchmark's own API calls inside the window
        self.requests = _requests(api)
        self.cpu = _cpu_seconds(pid)
        self.started = time.monotonic()
        self.rss_peak = _rss_mib(pid)

    def sample(self) -> None:
        self.rss_peak = max(self.rss_peak, _rss_mib(self.pid))

    def close(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        delta = _requests(self.api) - self.requests
        delta[("GET", "", "")] = 0  # /metrics itself
        total = sum(delta.values())
        heartbeats = sum(
            n
            for (verb, res, sub), n in delta.items()
            if res == "forensicnodes" and sub == "status" and verb in ("PATCH", "APPLY")
        )
        reviews = delta[("POST", "tokenreviews", "")]
        # The CSR signer's lists (a baseline revision's poll every 0.5 s), not the capture path.
        signer = delta[("LIST", "certificatesigningrequests", "")]
        operator = total - heartbeats - signer - self.own - 1  # -1: this window's /metrics read
        top = [(f"{v} {r}{'/' + s if s else ''}", n) for (v, r, s), n in delta.most_common(8)]
        return {
            "seconds": round(seconds, 1),
            "apiRequestsPerSecond": round(total / seconds, 2),
            "withoutHeartbeatsSignerAndBenchmarkPerSecond": round(max(0, operator) / seconds, 2),
            "agentTokenReviewsPerSecond": round(reviews / seconds, 2),
            "operatorCpuPercent": round(100 * (_cpu_seconds(self.pid) - self.cpu) / seconds, 1),
            "operatorRssMiB": round(_rss_mib(self.pid), 1),
            "operatorPeakRssMiB": round(max(self.rss_peak, _rss_mib(self.pid)), 1),
            "loadAverage": _load(),
            "topRequests": dict(top),
        }


def _list(api: ApiClient, selector: str | None = None, attempts: int = 5) -> list[dict[str, Any]]:
    """Every object, retried: on a loaded 2-core machine a list of thousands of objects can
    outlast the client's 30 s timeout while the operator writes a burst's status."""
    for attempt in range(attempts):
        try:
            query = {"labelSelector": selector} if selector else None
            return list(apiserver.request(api, "GET", BASE, query=query)["items"])
        except ClusterError:
            if attempt == attempts - 1:
                raise
            time.sleep(5)
    return []


def _finished(metrics_port: int) -> int:
    """The operator's own count of ForensicCheckpoints that reached a final phase: polled
    during a burst instead of listing the burst's objects, whose list (seconds of API server
    time for 1,000 objects) was a load of its own."""
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    prefix = "forensic_checkpoint_operator_checkpoints_total{"
    return sum(
        int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(prefix)
    )


def _burst(
    api: ApiClient,
    window: Window,
    names: list[str],
    pods: list[str],
    *,
    timeout: float,
    metrics_port: int,
) -> dict[str, Any]:
    created: dict[str, float] = {}
    burst = names[0].split("-")[1]  # fcp-<burst>-<i>

    def create(i: int) -> None:
        name = names[i]
        body = {
            "apiVersion": "forensic-checkpoint.dev/v1alpha1",
            "kind": "ForensicCheckpoint",
            "metadata": {"name": name, "labels": {"burst": burst}},
            "spec": {"podName": pods[i % len(pods)]},
        }
        apiserver.request(api, "POST", BASE, body)
        created[name] = time.time()

    before = _finished(metrics_port)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(len(names))))
    window.own += len(names)
    create_seconds = time.monotonic() - started
    while time.monotonic() - started < timeout:
        time.sleep(2)
        window.sample()
        if _finished(metrics_port) - before >= len(names):
            break
    done_seconds = time.monotonic() - started
    result = window.close()
    # One list at the end, of this burst's objects only.
    wanted = set(names)
    items = [o for o in _list(api, f"burst={burst}") if o["metadata"]["name"] in wanted]
    completed, first_pass, requested, finished = [], [], [], []
    for o in items:
        status = o.get("status") or {}
        at = created[o["metadata"]["name"]]
        if status.get("completedAt") and status.get("phase") == "Completed":
            # completedAt has whole seconds; the create time is exact.
            completed.append(max(0.0, _ts(status["completedAt"]).timestamp() - at))
        if status.get("custody"):
            first_pass.append(max(0.0, _ts(status["custody"][0]["at"]).timestamp() - at))
        container = (status.get("containers") or [{}])[0]
        if container.get("requestedAt"):
            requested.append(max(0.0, _ts(container["requestedAt"]).timestamp() - at))
        if container.get("finishedAt"):
            finished.append(max(0.0, _ts(container["finishedAt"]).timestamp() - at))
    phases = Counter((o.get("status") or {}).get("phase") for o in items)
    result.update(
        {
            "checkpoints": len(names),
            "phases": dict(phases),
            "createSeconds": round(create_seconds, 1),
            "allDoneSeconds": round(done_seconds, 1),
            "createToFirstPassSeconds": _quantiles(first_pass),
            "createToRequestedSeconds": _quantiles(requested),
            "createToAgentFinishedSeconds": _quantiles(finished),
            "createToCompletedSeconds": _quantiles(completed),
        }
    )
    return result


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(_percentile(values, 0.5), 2),
        "p99": round(_percentile(values, 0.99), 2),
        "max": round(max(values), 2),
    }


def _rest(api: ApiClient, pid: int, seconds: float) -> dict[str, Any]:
    window = Window(api, pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(2)
        window.sample()
    return window.close()


def _retention(api: ApiClient, fleet: FakeAgentFleet, count: int, timeout: float) -> float | None:
    """Retire ``count`` kept archives on their nodes; seconds until every status says so."""
    chosen = [o for o in _list(api) if (o.get("status") or {}).get("phase") == "Completed"][:count]
    for o in chosen:
        container = o["status"]["containers"][0]
        fleet.retire(o["status"]["nodeName"], container["captureKey"])
    started = time.monotonic()
    names = {o["metadata"]["name"] for o in chosen}
    while time.monotonic() - started < timeout:
        time.sleep(5)
        gone = [
            o
            for o in _list(api)
            if o["metadata"]["name"] in names
            and o["status"]["containers"][0].get("archiveDeleted")
            and o["status"]["custody"][-1]["action"] == "Deleted"
        ]
        if len(gone) == len(names):
            return round(time.monotonic() - started, 1)
    return None


def _baseline_tree(rev: str, into: Path) -> Path:
    """The operator's sources at ``rev`` (``git archive``), to run the old design."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", rev, "operator/src"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "operator" / "src"


def _settle(pid: int, timeout: float) -> float:
    """Wait until the operator is idle (under 10 % CPU over 5 s: a new operator's first
    listing is processed) or ``timeout``; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        cpu = _cpu_seconds(pid)
        time.sleep(5)
        if (_cpu_seconds(pid) - cpu) / 5 < 0.10:
            break
    return round(time.monotonic() - started, 1)


def _restart(stack: LocalStack, pythonpath: str | None = None) -> int:
    """(Re)start the operator, with ``pythonpath`` first on its path (the baseline's tree)."""
    stack.stop()
    previous = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        stack.start_operator([NAMESPACE], wait=300)
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous
    assert stack.operator_process is not None
    return stack.operator_process.pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--burst-size", type=int, default=1000)
    parser.add_argument("--rest", type=float, default=60.0, help="seconds of each rest window")
    parser.add_argument("--archive-poll-interval", type=float, default=30.0)
    parser.add_argument("--baseline-rev", default="34b9755", help="the per-object daemon design")
    parser.add_argument(
        "--baseline", choices=("auto", "run", "skip"), default="auto",
        help="the baseline at rest too (auto: up to 2,000 checkpoints, its daemons take too "
        "long to start with more on 2 cores)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a burst may take")
    args = parser.parse_args(argv)

    result: dict[str, Any] = {
        "nodes": args.nodes,
        "checkpoints": args.count,
        "burstSize": args.burst_size,
        "archivePollIntervalSeconds": args.archive_poll_interval,
        "loadAverageAtStart": os.getloadavg(),
    }
    with fleet_cluster("operator-scale-", NAMESPACE, args.nodes, node_prefix="scale") as env:
        api, stack, fleet, pods = env.api, env.stack, env.fleet, env.pods
        stack.archive_poll_interval = args.archive_poll_interval
        stack.start_operator([NAMESPACE])
        assert stack.operator_process is not None
        pid = stack.operator_process.pid
        time.sleep(5)
        new: dict[str, Any] = {"emptyRssMiB": round(_rss_mib(pid), 1), "emptyLoad": _load()}
        bursts = max(1, args.count // args.burst_size)
        for b in range(bursts):
            names = [f"fcp-{b}-{i:04d}" for i in range(args.burst_size)]
            load = _load()
            new[f"burst{b + 1}"] = _burst(
                api,
                Window(api, pid),
                names,
                pods,
                timeout=args.timeout,
                metrics_port=stack.metrics_port,
            )
            new[f"burst{b + 1}"]["loadAverageAtStart"] = load
            print(json.dumps({f"burst{b + 1}": _brief(new[f"burst{b + 1}"])}), flush=True)
        time.sleep(5)
        new["rest"] = _rest(api, pid, args.rest)
        new["retentionDeletionReflectedSeconds"] = _retention(
            api, fleet, 20, 2 * args.archive_poll_interval + 30
        )
        new["retentionLoad"] = _load()
        calls = fleet.kubelet_calls()
        new["kubeletCalls"] = sum(calls.values())
        new["duplicateKubeletCalls"] = sum(n - 1 for n in calls.values() if n > 1)
        # At rest after a restart: what the kept archives cost, without the bursts' high-water
        # mark (CPython keeps the memory a burst took).
        pid = _restart(stack)
        new["settleAfterRestartSeconds"] = _settle(pid, 600)
        new["restAfterRestart"] = _rest(api, pid, args.rest)
        result["new"] = new
        print(json.dumps({"restAfterRestart": new["restAfterRestart"]}), flush=True)
        stack.stop()

        if args.baseline == "run" or (args.baseline == "auto" and args.count <= 2000):
            old_src = _baseline_tree(args.baseline_rev, env.work / "baseline")
            pid = _restart(stack, str(old_src))
            # Its start: a daemon per object, each polls at once.
            result["old"] = {"rev": args.baseline_rev, "settleSeconds": _settle(pid, 600)}
            result["old"]["rest"] = _rest(api, pid, args.rest)
            result["ratios"] = _ratios(result, args.count)
        else:
            result["old"] = {
                "skipped": f"no baseline run ({args.count} checkpoints; --baseline run runs "
                f"it): {args.baseline_rev}'s per-object daemons take too long to start here"
            }
        result["loadAverageAtEnd"] = os.getloadavg()
        result["finishedAt"] = datetime.now(UTC).isoformat(timespec="seconds")
        print(json.dumps(result, indent=2))
        return 0


def _brief(burst: dict[str, Any]) -> dict[str, Any]:
    """A burst's headline figures, printed as it ends (a 10,000 run is long)."""
    keys = ("phases", "allDoneSeconds", "createToCompletedSeconds", "loadAverage")
    return {k: burst[k] for k in keys}


def _ratios(result: dict[str, Any], count: int) -> dict[str, Any]:
    """New against old at rest with the same ``count`` kept archives (each just restarted), and
    both extrapolated to 10,000 along the per-object RSS slope (from the empty operator of this
    tree)."""
    new, old = result["new"]["restAfterRestart"], result["old"]["rest"]
    empty = result["new"]["emptyRssMiB"]
    slope_new = (new["operatorRssMiB"] - empty) / count
    slope_old = (old["operatorRssMiB"] - empty) / count
    return {
        "rssPerKeptArchiveMiB": {"new": round(slope_new, 4), "old": round(slope_old, 4)},
        "rssAt10000MiB": {
            "new": round(empty + 10000 * slope_new, 1),
            "old": round(empty + 10000 * slope_old, 1),
        },
        "restApiRequestsOldToNew": _ratio(
            old["withoutHeartbeatsSignerAndBenchmarkPerSecond"],
            new["withoutHeartbeatsSignerAndBenchmarkPerSecond"],
        ),
        "restCpuOldToNew": _ratio(old["operatorCpuPercent"], new["operatorCpuPercent"]),
        "restRssOldToNew": _ratio(old["operatorRssMiB"], new["operatorRssMiB"]),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


if __name__ == "__main__":
    sys.exit(main())
