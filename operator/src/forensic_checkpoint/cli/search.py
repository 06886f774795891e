"""`forensic-checkpoint search ARCHIVE PATTERN...`: find text in process memory, nothing else.

The counterpart of ``checkpointctl memparse --search``/``--search-regex``: no report, no
findings, no archive hash, so its time is the memory engine's. Matches of ``--regex`` are
masked unless ``--reveal`` (the same redaction as ``analyze``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from forensic_checkpoint.analysis.commands.search import SearchResult

HELP = (
    "Search process memory of a checkpoint archive for literal text or regular expressions "
    "(like checkpointctl memparse --search), streaming the pages without extracting."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "archive", type=Path, help="checkpoint archive (.tar, .tar.gz, .tar.zst); - reads stdin"
    )
    parser.add_argument(
        "pattern", nargs="*", help="literal text to find (raw bytes, UTF-8); several allowed"
    )
    parser.add_argument(
        "--regex",
        action="append",
        default=[],
        metavar="RE",
        help="Python regular expression over raw memory bytes; repeatable",
    )
    parser.add_argument("--pid", type=int, metavar="PID", help="search only this process")
    parser.add_argument(
        "--context", type=int, default=32, metavar="N", help="bytes shown around each match"
    )
    parser.add_argument(
        "--max-matches", type=int, default=100, metavar="N", help="matches kept per pattern"
    )
    from forensic_checkpoint.cli.flags import add_output_file, add_output_format

    add_output_format(parser)
    add_output_file(parser)
    parser.add_argument(
        "--reveal", action="store_true", help="show regex matches and context unmasked"
    )


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint.analysis.commands.heap import tune_for
    from forensic_checkpoint.cli.flags import STDIN, archive_from, write_output
    from forensic_checkpoint.errors import ConfigError

    if args.context < 0 or args.max_matches < 0:
        raise ConfigError("--context and --max-matches must not be negative")
    from forensic_checkpoint import progress

    with archive_from(args.archive) as archive, progress.for_archive(archive) as bar:
        tune_for([archive])
        result = _search(archive, args, bar.advance)
    if args.archive == STDIN:
        result.archive = "-"
    if args.output == "json":
        import json

        text = json.dumps(result.to_json(), indent=2) + "\n"
    elif args.output == "yaml":
        import yaml

        text = yaml.safe_dump(result.to_json(), sort_keys=False, allow_unicode=True, width=100)
    else:
        text = _text(result)
    write_output(text, args.output_file)
    from forensic_checkpoint.cli.main import exit_status

    return exit_status("search", result.warnings)


def _search(
    archive: Path, args: argparse.Namespace, on_progress: Callable[[int], None]
) -> SearchResult:
    from forensic_checkpoint.analysis.commands.search import SearchOptions, search_archive

    return search_archive(
        archive,
        SearchOptions(
            literals=[p for p in args.pattern if p],
            regexes=list(args.regex),
            pid=args.pid,
            context=args.context,
            max_matches=args.max_matches,
            reveal=bool(args.reveal),
            on_progress=on_progress,
        ),
    )


def _text(result: SearchResult) -> str:
    """One line per match, memparse-like: pid, address, mapping, context."""
    lines = []
    for s in result.memory.searches:
        more = f", showing {len(s.matches)}" if s.truncated else ""
        lines.append(f"{s.kind} {s.pattern!r}: {s.total_matches} matches{more}")
        lines.extend(
            f"  pid {m.pid:<7} {m.address:<18} {m.context}    [{m.where()}]" for m in s.matches
        )
    lines.extend(f"warning: {w}" for w in result.warnings)
    return "\n".join(lines) + "\n"
