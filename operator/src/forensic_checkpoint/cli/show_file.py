"""`forensic-checkpoint show-file ARCHIVE PATH`: print one file the container changed."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = (
    "Print the content of a file from the checkpoint: a file in rootfs-diff.tar or a "
    "deleted-but-open file CRIU saved. Bytes are written as they are."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", type=Path, help="checkpoint archive")
    parser.add_argument("path", help="absolute path inside the container, e.g. /etc/passwd")
    parser.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")


def run(args: argparse.Namespace) -> int:
    # The report models use no pydantic plugins; skipping the entry-point scan that looks
    # for them saves a noticeable part of a short CLI run.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from forensic_checkpoint.analysis.show_file import show_file

    if args.output:
        with args.output.open("wb") as out:

            def to_file(chunk: bytes) -> None:
                out.write(chunk)

            show_file(args.archive, args.path, to_file)
    else:

        def to_stdout(chunk: bytes) -> None:
            sys.stdout.buffer.write(chunk)

        show_file(args.archive, args.path, to_stdout)
        sys.stdout.buffer.flush()
    return 0
