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
        "path",
        help="/path/in/container; an archive member such as checkpoint/files.img; or "
        "memory:PID[:ADDRESS:LENGTH] for a hexdump of a process's dumped memory",
    )
    parser.add_argument(
        "--decode", action="store_true", help="decode a CRIU image member to JSON (crit show)"
    )
    parser.add_argument(
        "--raw", action="store_true", help="with memory:PID, print raw bytes, not a hexdump"
    )
    from forensic_checkpoint.cli.flags import add_output_file

    add_output_file(parser, legacy_o=True)


def run(args: argparse.Namespace) -> int:
    # The report models use no pydantic plugins; skipping the entry-point scan that looks
    # for them saves a noticeable part of a short CLI run.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from forensic_checkpoint.analysis.commands.show_file import show_file, show_member, show_memory

    def show(sink: Callable[[bytes], None]) -> None:
        if args.path.startswith("memory:"):
            pid, address, length = _memory_spec(args.path)
            show_memory(args.archive, pid, sink, address=address, length=length, raw=args.raw)
        elif args.path.startswith("/"):
            show_file(args.archive, args.path, sink)
        else:
            show_member(args.archive, args.path, sink, decode=args.decode)

    if args.output_file:
        from forensic_checkpoint.errors import ConfigError

        try:
            out = args.output_file.open("wb")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.output_file}: {exc.strerror}") from exc
        with out:

            def to_file(chunk: bytes) -> None:
                out.write(chunk)

            show(to_file)
    else:

        def to_stdout(chunk: bytes) -> None:
            sys.stdout.buffer.write(chunk)

        show(to_stdout)
        sys.stdout.buffer.flush()
    return 0


def _memory_spec(spec: str) -> tuple[int, int | None, int | None]:
    """``memory:PID`` or ``memory:PID:ADDRESS:LENGTH`` (numbers in decimal or 0x hex)."""
    from forensic_checkpoint.errors import ConfigError

    parts = spec.split(":")[1:]
    try:
        numbers = [int(p, 0) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"{spec!r}: expected memory:PID[:ADDRESS:LENGTH]") from exc
    if len(numbers) == 1:
        return numbers[0], None, None
    if len(numbers) == 3 and numbers[2] > 0:
        return numbers[0], numbers[1], numbers[2]
    raise ConfigError(f"{spec!r}: expected memory:PID[:ADDRESS:LENGTH]")
