"""``forensic-checkpoint-dev corpus`` (``make corpus``): capture the findings corpus on the real
node, or list it. Scenarios already in the cache (same definition hash) are not captured again;
when all are cached no node is started."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HELP = "Capture the findings corpus (benign workloads and attacks) on the real node."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", help="comma-separated scenario names (default: all)")
    parser.add_argument("--force", action="store_true", help="capture even when cached")
    parser.add_argument("--list", action="store_true", help="list the scenarios and their cache")
    parser.add_argument("--keep-going", action="store_true", help="go on after a failed scenario")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint_dev.corpus import runner, scenarios

    chosen = scenarios.by_name(args.only.split(",") if args.only else None)
    image = runner.corpus_image()
    todo = []
    for s in chosen:
        directory = runner.cached(s, image.name)
        done = runner.is_cached(directory, s.name)
        if args.list:
            print(f"{s.kind:7} {s.name:26} {'cached' if done else 'missing':8} {directory}")
        if args.force or not done:
            todo.append((s, directory))
    if args.list:
        return 0
    print(f"corpus: {len(chosen) - len(todo)} of {len(chosen)} scenarios cached in "
          f"{runner.cache_root()}", file=sys.stderr)  # fmt: skip
    if not todo:
        return 0
    runner.ensure_root()
    work = args.dir or Path(tempfile.mkdtemp(prefix="forensic-corpus-"))
    started = time.monotonic()
    failed: list[str] = []
    with runner.real_node_stack(work) as (cluster, stack):
        run_ = runner.CorpusRun(cluster, stack, image)
        run_.prepare()
        print(f"corpus: node up, image imported in {run_.timings['image import']:.0f} s "
              f"({time.monotonic() - started:.0f} s)", file=sys.stderr)  # fmt: skip
        for s, directory in todo:
            try:
                result = run_.capture(s, directory)
            except Exception as exc:  # reported; fatal unless --keep-going
                failed.append(s.name)
                print(f"corpus: {s.name} FAILED: {exc}", file=sys.stderr)
                if not args.keep_going:
                    break
                continue
            pids = ", ".join(f"{'|'.join(e['rules'])}@{e['pid']}" for e in result["expected"])
            print(f"corpus: {s.name} captured in {run_.timings[s.name]:.0f} s "
                  f"({result['archive']['size'] >> 20} MiB) {pids}", file=sys.stderr)  # fmt: skip
    print(f"corpus: {len(todo) - len(failed)} captured, {len(failed)} failed"
          f"{' (' + ', '.join(failed) + ')' if failed else ''} in "
          f"{time.monotonic() - started:.0f} s; node down", file=sys.stderr)  # fmt: skip
    return 1 if failed else 0
