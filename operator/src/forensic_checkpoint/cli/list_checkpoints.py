"""`forensic-checkpoint list [DIR|FILE]...`: the checkpoints found, one line each."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = (
    "List checkpoint archives (default: the kubelet's /var/lib/kubelet/checkpoints) with "
    "namespace, pod, container, engine and checkpoint time."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, help="directories or archive files")
    from forensic_checkpoint.cli.flags import add_color, add_output_file, add_output_format

    add_output_format(parser)
    add_output_file(parser)
    add_color(parser)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # see cli/analyze.py
    from forensic_checkpoint.analysis.commands.listing import KUBELET_CHECKPOINTS, list_checkpoints
    from forensic_checkpoint.analysis.presentation.render import render_report
    from forensic_checkpoint.cli.flags import text_style, write_output

    listing = list_checkpoints(list(args.paths) or [KUBELET_CHECKPOINTS])
    style = text_style(args.color, args.output_file)
    write_output(render_report(listing, args.output, style), args.output_file)
    failed = [c for c in listing.checkpoints if c.error is not None]
    for c in failed:
        # The row shows it too; stderr tells a script which file, one line each.
        print(f"forensic-checkpoint list: error: {c.path}: {c.error}", file=sys.stderr)
    return 1 if failed else 0
