"""`forensic-checkpoint diff A B`: what changed between two checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = (
    "Compare two checkpoint archives: processes, open files, sockets, rootfs changes and "
    "memory size."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", type=Path, help="the earlier checkpoint archive")
    parser.add_argument("b", type=Path, help="the later checkpoint archive")
    parser.add_argument(
        "--format", choices=("text", "json", "yaml"), default="text", help="output format"
    )


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint.analysis import AnalyzerOptions, analyze
    from forensic_checkpoint.analysis.commands.diff import diff_reports
    from forensic_checkpoint.analysis.commands.heap import tune_for
    from forensic_checkpoint.analysis.presentation.render import render_report

    tune_for([args.a, args.b])
    options = AnalyzerOptions()
    a, b = analyze(args.a, options), analyze(args.b, options)
    diff = diff_reports(a, b)
    sys.stdout.write(render_report(diff, args.format))
    sys.stdout.flush()
    from forensic_checkpoint.cli.main import exit_status

    # A diff of a partly read archive would show what is missing as removed: never exit 0.
    return exit_status(
        "diff", [f"{args.a}: {w}" for w in a.warnings] + [f"{args.b}: {w}" for w in b.warnings]
    )
