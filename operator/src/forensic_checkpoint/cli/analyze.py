"""`forensic-checkpoint analyze ARCHIVE`: the offline report of one checkpoint archive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.model.report import Report

HELP = (
    "Analyse a container checkpoint archive (CRI-O, containerd or podman; plain, gzip or "
    "zstd) without extracting it: identity, processes, files, sockets, memory, rootfs changes."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", type=Path, help="checkpoint archive (.tar, .tar.gz, .tar.zst)")
    parser.add_argument(
        "--format", choices=("text", "json", "yaml"), default="text", help="output format"
    )
    parser.add_argument(
        "--search",
        action="append",
        default=[],
        metavar="TEXT",
        help="literal text to find in process memory (raw bytes, UTF-8); repeatable",
    )
    parser.add_argument(
        "--search-regex",
        action="append",
        default=[],
        metavar="RE",
        help="Python regular expression over raw memory bytes; repeatable",
    )
    parser.add_argument(
        "--reveal",
        action="store_true",
        help="show secret values (environment values, regex matches) instead of masking them",
    )
    parser.add_argument(
        "--context", type=int, default=32, metavar="N", help="bytes shown around each match"
    )
    parser.add_argument(
        "--max-matches", type=int, default=100, metavar="N", help="matches kept per pattern"
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="write the report to this file instead of stdout"
    )
    parser.add_argument(
        "--pid",
        type=int,
        metavar="PID",
        help="show only this process and its descendants (checkpointctl inspect --pid)",
    )
    parser.add_argument(
        "--yara",
        action="append",
        default=[],
        metavar="PATH",
        help="YARA rule file or folder (*.yar, *.yara) scanned over process memory, memfd and "
        "deleted files, rootfs-diff files, /dev/shm and socket/pipe queues; repeatable",
    )
    parser.add_argument(
        "--no-memory-secrets",
        action="store_true",
        help="skip the credential search over all process memory (the CPU it costs; "
        "environment variables and files are still checked)",
    )
    parser.add_argument(
        "-i",
        "--identity",
        type=Path,
        metavar="FILE",
        help="age identity (or ssh private key) to read an age-encrypted archive, as the agent "
        "exports it; the plaintext is held in a private 0700 temporary directory and removed",
    )
    for flag, what in (
        ("--export-timesketch", "the timeline as Timesketch JSONL (each line validated)"),
        ("--export-stix", "the findings as a STIX 2.1 bundle"),
        ("--export-html", "a single-file offline HTML report"),
    ):
        parser.add_argument(flag, type=Path, metavar="FILE", help=f"also write {what}")


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint.analysis import AnalyzerOptions, analyze
    from forensic_checkpoint.analysis.commands.heap import tune_for
    from forensic_checkpoint.analysis.presentation.render import render_report
    from forensic_checkpoint.errors import ConfigError

    if args.context < 0 or args.max_matches < 0:
        raise ConfigError("--context and --max-matches must not be negative")
    options = AnalyzerOptions(
        searches=list(args.search),
        regexes=list(args.search_regex),
        reveal=bool(args.reveal),
        context=args.context,
        max_matches=args.max_matches,
        yara=[str(p) for p in args.yara],
        memory_secrets=not args.no_memory_secrets,
    )
    tune_for([args.archive])
    if args.identity is not None:
        from forensic_checkpoint.agent.evidence.encryption import decrypted_path

        with decrypted_path(args.archive, args.identity) as plain:
            report = analyze(plain, options)
        # Name the file the analyst gave; sha256 and size stay those of the plaintext tar,
        # the value the custody chain records at capture.
        report.archive.path = str(args.archive)
    else:
        report = analyze(args.archive, options)
    if args.pid is not None:
        from forensic_checkpoint.analysis.commands.prune import prune_to_subtree

        report = prune_to_subtree(report, args.pid)
    text = render_report(report, args.format)
    _exports(report, args)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    from forensic_checkpoint.cli.main import exit_status

    return exit_status("analyze", report.warnings)


def _exports(report: Report, args: argparse.Namespace) -> None:
    """Write the --export-* files (from the same, redacted unless --reveal, report).

    Each exporter is imported only when asked for, so a plain analyze pays for none of them.
    """
    if args.export_timesketch is not None:
        from forensic_checkpoint.analysis.presentation.timesketch import to_jsonl

        args.export_timesketch.write_text(to_jsonl(report), encoding="utf-8")
    if args.export_stix is not None:
        from forensic_checkpoint.analysis.presentation.stix import to_json

        args.export_stix.write_text(to_json(report), encoding="utf-8")
    if args.export_html is not None:
        from forensic_checkpoint.analysis.presentation.html import to_html

        args.export_html.write_text(to_html(report), encoding="utf-8")
