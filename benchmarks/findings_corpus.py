"""Precision and recall of the findings engine on the real-node corpus (``make bench-findings``).

Runs the analyzer (``forensic-checkpoint analyze --format json``, as an analyst would) over every
archive ``make corpus`` captured, scores its findings against each archive's ground truth
(``dev/src/forensic_checkpoint_dev/corpus/scoring.py`` says how), and prints per rule the true
positives, false positives, false negatives, precision and recall, then per archive the findings
above info, then the goals. Exits 1 when a goal fails, 2 when the corpus is incomplete.

    python -m benchmarks.findings_corpus [--only a,b] [--dir DIR] [--json OUT]

``--dir`` scores the ``<name>.tar`` + ``<name>.truth.json`` pairs of one directory instead of the
cache (any archives with truth files in that format).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from forensic_checkpoint_dev.corpus import runner, scenarios, scoring


def analyze(archive: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "forensic_checkpoint", "analyze", str(archive), "--format", "json"],
        capture_output=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"analyze {archive}: exit {out.returncode}: {out.stderr.decode()[-500:]}")
    return list(json.loads(out.stdout).get("findings") or [])


def corpus_pairs(only: list[str] | None, directory: Path | None) -> tuple[list[Path], list[str]]:
    """The truth files to score and the scenarios with no capture yet."""
    if directory is not None:
        truths = sorted(directory.glob("*.truth.json"))
        return [t for t in truths if not only or t.name.removesuffix(".truth.json") in only], []
    image = runner.corpus_image().name
    found, missing = [], []
    for s in scenarios.by_name(only):
        d = runner.cached(s, image)
        if runner.is_cached(d, s.name):
            found.append(d / f"{s.name}.truth.json")
        else:
            missing.append(s.name)
    return found, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--dir", type=Path, help="score the archives of this directory")
    parser.add_argument("--json", type=Path, help="also write every archive's findings here")
    args = parser.parse_args(argv)
    truths, missing = corpus_pairs(args.only.split(",") if args.only else None, args.dir)
    scores, findings_by_name = [], {}
    started = time.monotonic()
    for path in truths:
        truth = json.loads(path.read_text())
        archive = path.with_name(truth["archive"]["file"])
        findings = analyze(archive)
        findings_by_name[truth["scenario"]] = findings
        scores.append(scoring.score_archive(truth, findings))
    print(scoring.render(scores))
    print(f"\n{len(scores)} archives analysed in {time.monotonic() - started:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(findings_by_name, indent=1))
    if missing:
        print(f"corpus incomplete, not captured: {', '.join(missing)} (run `make corpus`)")
        return 2
    return 1 if scoring.goal_failures(scores) else 0


if __name__ == "__main__":
    sys.exit(main())
