"""`forensic-checkpoint show-file ARCHIVE PATH`: print one file the container changed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

HELP = (
    "Print the content of a file from the checkpoint: an absolute PATH is a file in "
    "rootfs-diff.tar or a deleted-but-open file CRIU saved; a relative PATH is an archive "
    "member (e.g. checkpoint/core-1.img, which --decode prints as JSON like `crit show`)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", type=Path, help="checkpoint archive")
    parser.add_argument(
        "path", help="/path/in/container, or an archive member such as checkpoint/files.img"
    )
    parser.add_argument(
        "--decode", action="store_true", help="decode a CRIU image member to JSON (crit show)"
    )
    parser.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")


def run(args: argparse.Namespace) -> int:
    # The report models use no pydantic plugins; skipping the entry-point scan that looks
    # for them saves a noticeable part of a short CLI run.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from forensic_checkpoint.analysis.show_file import show_file, show_member

    def show(sink: Callable[[bytes], None]) -> None:
        if args.path.startswith("/"):
            show_file(args.archive, args.path, sink)
        else:
            show_member(args.archive, args.path, sink, decode=args.decode)

    if args.output:
        with args.output.open("wb") as out:

            def to_file(chunk: bytes) -> None:
                out.write(chunk)

            show(to_file)
    else:

        def to_stdout(chunk: bytes) -> None:
            sys.stdout.buffer.write(chunk)

        show(to_stdout)
        sys.stdout.buffer.flush()
    return 0
