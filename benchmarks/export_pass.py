"""The export beside the analysis (issue 19, part 2): when a capture's archive is in the bucket,
against the export started only after Completed (a baseline revision, run in the same
invocation).

One agent capture side per design (:class:`tests.evidence.agent_node.Node`: the real job store,
capture service, analysis children and export worker) in a process of its own, with the
design's sources first on its path. A stand-in kubelet writes a real checkpoint grown to
``--mib`` MiB of process memory (:mod:`benchmarks.large_archive`); the real analysis reads it;
the export worker uploads it to moto's S3 server on loopback (5 MiB parts, every object read
back; moto at nice 19, standing for a remote store). Printed per design and run: kubelet ->
Completed, Completed -> Exported, kubelet -> Exported, and the load average.

    python -m benchmarks.export_pass [--mib 512] [--runs 2] [--baseline-rev 309b26a]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.large_archive import MIB, generate
from benchmarks.operator_scale import _baseline_tree, _load

REPO = Path(__file__).resolve().parents[1]
KEY = "bench"
DESIGNS = {
    "baseline": "baseline (export after Completed, no nice)",
    "after": "this tree, default (after Completed)",
    "during": "this tree, duringAnalysis",
}
CHILD = (sys.executable, "-m", "benchmarks.export_pass", "--child")
LOWEST = ("nice", "-n", "19")


def _child(endpoint: str, bucket: str, sample: Path, root: Path, early: bool) -> dict[str, Any]:
    """One capture through this process's sources (``early``: ``duringAnalysis``); its
    timestamps."""
    from tests.evidence.agent_node import Node

    from forensic_checkpoint.agent.capture.analysis_runner import ProcessAnalyzer
    from forensic_checkpoint.agent.evidence.export_config import ExportConfig

    config = ExportConfig(
        bucket=bucket,
        state_dir=root / "state" / "exports",
        endpoint_url=endpoint,
        access_key_id=KEY,
        secret_access_key=KEY,
        cluster="bench",
        part_size=5 * MIB,
        node_name="node-a",
    )
    if early:  # a field the baseline does not have
        config = dataclasses.replace(config, during_analysis=True)
    node = Node(root, sample, config, ProcessAnalyzer(1))
    assert node.exports is not None
    if hasattr(node.exports, "follow"):  # wired as agent/process.py wires it
        node.exports.follow(node.service)
    else:  # the baseline
        node.service.on_finished.append(node.exports.wake)
    node.exports.start()
    try:
        submitted = time.time()
        key = node.submit("big")
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            status = node.service.status(key)
            export = status.export
            if status.state.terminal and export is not None and not export.phase.active:
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"capture {key} was not exported in 900 s")
    finally:
        node.exports.stop()
        node.close()
    if status.finished_at is None or export.record is None:
        raise SystemExit(f"capture {key}: {status.state} {status.reason}; export {export.phase}")
    timings = status.timings.model_dump(by_alias=True) if status.timings else {}
    return {
        "submitted": submitted,
        "finished": status.finished_at.timestamp(),
        "exported": export.record.exported_at.timestamp(),
        "timings": timings,
    }


def _run(  # noqa: PLR0917 - one design's inputs
    src: Path, early: bool, endpoint: str, bucket: str, sample: Path, work: Path
) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{REPO}")
    with tempfile.TemporaryDirectory(dir=work) as root:
        out = subprocess.run(
            [*CHILD, endpoint, bucket, str(sample), root, "early" if early else "after"],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    facts = json.loads(out.strip().splitlines()[-1])
    # The kubelet's answer: the archive landed when the call ended (queued + kubelet stages).
    stages = facts["timings"]
    answered = facts["submitted"] + (stages.get("queuedMs", 0) + stages.get("kubeletMs", 0)) / 1000
    return {
        "completed": facts["finished"] - answered,
        "completedToExported": facts["exported"] - facts["finished"],
        "exported": facts["exported"] - answered,
    }


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"moto_server did not listen on {port}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        endpoint, bucket, archive, root, when = argv[1:6]
        print(json.dumps(_child(endpoint, bucket, Path(archive), Path(root), when == "early")))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="process memory in the archive")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--baseline-rev", default="309b26a", help="export after Completed")
    args = parser.parse_args(argv)

    import boto3

    # moto stands for a remote store: its own process at the lowest priority, so that on this
    # machine its CPU is not taken from the node's analysis (a real bucket's is not).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    moto = Path(sys.executable).parent / "moto_server"
    server = subprocess.Popen(
        [*LOWEST, str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    _wait_for_port(port)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=KEY,
        region_name="us-east-1",
    )
    results: dict[str, list[dict[str, float]]] = {d: [] for d in DESIGNS}
    with tempfile.TemporaryDirectory(prefix="export-pass-") as tmp:
        work = Path(tmp)
        sample = Path(generate(work, size=args.mib * MIB).path)
        here = REPO / "operator" / "src"
        trees = {
            "baseline": (_baseline_tree(args.baseline_rev, work / "baseline"), False),
            "after": (here, False),
            "during": (here, True),
        }
        print(f"archive {sample.stat().st_size / MIB:.0f} MiB; moto S3 at {endpoint}")
        for run in range(args.runs):
            for design, (src, early) in trees.items():  # alternated: all see the same machine
                bucket = f"evidence-{run}-{design}"
                s3.create_bucket(Bucket=bucket)  # a fresh bucket: nothing found from a run before
                result = _run(src, early, endpoint, bucket, sample, work)
                results[design].append(result)
                print(
                    f"run {run + 1} {design:8}: kubelet answer -> Completed "
                    f"{result['completed']:.2f} s, Completed -> Exported "
                    f"{result['completedToExported']:.2f} s, answer -> Exported "
                    f"{result['exported']:.2f} s (load {_load()})",
                    flush=True,
                )
    server.terminate()
    server.wait()
    for design, label in DESIGNS.items():
        done = [r["completed"] for r in results[design]]
        exported = [r["exported"] for r in results[design]]
        print(
            f"median {label}: answer -> Completed {statistics.median(done):.2f} s, "
            f"answer -> Exported {statistics.median(exported):.2f} s"
        )
    print(f"(baseline {args.baseline_rev}; at {datetime.now():%H:%M})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
