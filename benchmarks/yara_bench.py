"""YARA benchmarks for the findings engine (issue 8).

1. Throughput of ``scan_pages`` (per contiguous pagemap run, yara-x) over every pages file of
   ``memhog-large.tar`` (~100 MiB of dumped memory), read from the plain tar with a warm page
   cache: target >= 0.5 GB/s.
2. ``forensic-checkpoint analyze --yara`` with a generated 1,000-rule set against the plain
   analysis of the same archive, whole process each (start-up, rule compile and all): target
   <= 2x.

Both print ratios, not pass/fail. The archive comes from ``../shared/samples`` (or
``$FC_SAMPLES``); the benchmark says so and stops when it is absent.

    python -m benchmarks.yara_bench [--runs N] [--rules N]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("FC_SAMPLES", REPO.parent / "shared" / "samples"))
TARGET_GBPS = 0.5
TARGET_RATIO = 2.0


def generated_rules(count: int, seed: int = 8) -> str:
    """``count`` rules shaped like real ones: a literal and an 8-byte hex string each."""
    rnd = random.Random(seed)  # noqa: S311 (reproducible test data, not secrets)
    alphabet = string.ascii_letters + string.digits
    out = []
    for i in range(count):
        text = "".join(rnd.choice(alphabet) for _ in range(14))
        hexes = " ".join(f"{rnd.randrange(256):02X}" for _ in range(8))
        out.append(
            f'rule gen_{i:04d} {{ meta: author = "yara_bench" '
            f'strings: $a = "{text}" $b = {{ {hexes} }} condition: any of them }}'
        )
    return "\n".join(out) + "\n"


def throughput(archive: Path, rules_text: str, runs: int) -> tuple[float, float, int, int]:
    """Median GB/s of reading and scanning every pages file of ``archive``, and of the yara-x
    calls alone: (end-to-end GB/s, scan-only GB/s, bytes, scan calls)."""
    from forensic_checkpoint.analysis import AnalyzerOptions, analyze
    from forensic_checkpoint.analysis.findings.run import pages_tasks
    from forensic_checkpoint.analysis.findings.sources import visit_members
    from forensic_checkpoint.analysis.findings.yara_scan import (
        YaraScanner,
        compile_rules_from_source,
        scan_pages,
    )
    from forensic_checkpoint.analysis.format.archive import scan_archive
    from forensic_checkpoint.analysis.format.streams import Readable

    report = analyze(archive, AnalyzerOptions(findings=False, read_process_memory=False))
    contents = scan_archive(archive)
    tasks = pages_tasks(contents, report.processes, report.shared_memory)
    rules = compile_rules_from_source(rules_text)
    rates, engine = [], []
    scanned = calls = 0
    for _ in range(runs):
        scanner = YaraScanner(rules)
        started = time.perf_counter()

        def visit(name: str, stream: Readable, scanner: YaraScanner = scanner) -> None:
            task = tasks[name]
            scan_pages(
                scanner, stream, task.index, kind=task.kind, target=task.target, pid=task.pid
            )

        visit_members(contents, set(tasks), visit)
        elapsed = time.perf_counter() - started
        scanned, calls = scanner.scanned_bytes, scanner.calls
        rates.append(scanned / elapsed / 1e9)
        engine.append(scanned / scanner.scan_seconds / 1e9)
    return statistics.median(rates), statistics.median(engine), scanned, calls


def whole_process(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rules", type=int, default=1000)
    args = parser.parse_args()
    archive = SAMPLES / "memhog-large.tar"
    if not archive.exists():
        print(f"yara_bench: {archive} not found (set FC_SAMPLES); nothing measured")
        return 0
    rules_text = generated_rules(args.rules)
    for count, text in ((args.rules, rules_text), (20, generated_rules(20, seed=20))):
        gbps, engine, scanned, calls = throughput(archive, text, args.runs)
        print(
            f"yara, {count} generated rules over {scanned / 2**20:.1f} MiB of pages in {calls} "
            f"scan calls: read+scan {gbps:.2f} GB/s, yara-x calls alone {engine:.2f} GB/s "
            f"(target >= {TARGET_GBPS}; ratio {gbps / TARGET_GBPS:.2f}x / "
            f"{engine / TARGET_GBPS:.2f}x the target)"
        )

    cli = [sys.executable, "-m", "forensic_checkpoint", "analyze", str(archive), "-o", "json"]
    with tempfile.TemporaryDirectory() as tmp:
        rule_file = Path(tmp) / "generated.yar"
        rule_file.write_text(rules_text)
        whole_process([*cli, "--yara", str(rule_file)], 1)  # warm the page cache
        plain = whole_process(cli, args.runs)
        with_yara = whole_process([*cli, "--yara", str(rule_file)], args.runs)
    ratio = with_yara / plain
    print(
        f"analyze memhog-large.tar: plain {plain:.2f} s, --yara ({args.rules} rules) "
        f"{with_yara:.2f} s, ratio {ratio:.2f} (target <= {TARGET_RATIO})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
