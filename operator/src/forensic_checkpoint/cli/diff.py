"""`forensic-checkpoint diff A B`: what changed between two checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = (
    "Compare two checkpoint archives: processes, open files, sockets, rootfs changes and "
    "memory size."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", type=Path, help="the earlier checkpoint archive")
    parser.add_argument("b", type=Path, help="the later checkpoint archive")
    from forensic_checkpoint.cli.flags import add_color, add_output_file, add_output_format

    add_output_format(parser)
    add_output_file(parser)
    add_color(parser)


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint.analysis import AnalyzerOptions, analyze
    from forensic_checkpoint.analysis.commands.diff import diff_reports
    from forensic_checkpoint.analysis.commands.heap import tune_for
    from forensic_checkpoint.analysis.presentation.render import render_report
    from forensic_checkpoint.cli.flags import text_style, write_output

    tune_for([args.a, args.b])
    options = AnalyzerOptions()
    a, b = analyze(args.a, options), analyze(args.b, options)
    diff = diff_reports(a, b)
    style = text_style(args.color, args.output_file)
    write_output(render_report(diff, args.output, style), args.output_file)
    from forensic_checkpoint.cli.main import exit_status

    # A diff of a partly read archive would show what is missing as removed: never exit 0.
    return exit_status(
        "diff", [f"{args.a}: {w}" for w in a.warnings] + [f"{args.b}: {w}" for w in b.warnings]
    )
