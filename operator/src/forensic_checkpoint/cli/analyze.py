"""`forensic-checkpoint analyze ARCHIVE`: the offline report of one checkpoint archive."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forensic_checkpoint.analysis import AnalyzerOptions
    from forensic_checkpoint.analysis.model.report import Report

HELP = (
    "Analyse a container checkpoint archive (CRI-O, containerd or podman; plain, gzip or "
    "zstd) without extracting it: identity, processes, files, sockets, memory, rootfs changes."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "archive", type=Path, help="checkpoint archive (.tar, .tar.gz, .tar.zst); - reads stdin"
    )
    from forensic_checkpoint.cli.flags import (
        add_color,
        add_fail_on,
        add_output_file,
        add_output_format,
    )

    add_output_format(parser, legacy_file=True)
    add_output_file(parser)
    add_fail_on(parser)
    add_color(parser)
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
    from forensic_checkpoint.analysis import AnalyzerOptions
    from forensic_checkpoint.analysis.presentation.render import render_report
    from forensic_checkpoint.cli.flags import (
        STDIN,
        archive_from,
        fail_on_status,
        text_style,
        write_output,
    )
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
    from dataclasses import replace

    from forensic_checkpoint import progress

    with archive_from(args.archive) as archive, progress.for_archive(archive) as bar:
        report = _analyze(archive, replace(options, on_progress=bar.advance), args.identity)
    # Name the file the analyst gave (not a plaintext or stdin spool); sha256 and size stay
    # those of the plaintext tar, the value the custody chain records at capture.
    report.archive.path = "-" if args.archive == STDIN else str(args.archive)
    if args.pid is not None:
        from forensic_checkpoint.analysis.commands.prune import prune_to_subtree

        report = prune_to_subtree(report, args.pid)
    text = render_report(report, args.output, text_style(args.color, args.output_file))
    _exports(report, args)
    write_output(text, args.output_file)
    from forensic_checkpoint.cli.main import exit_status

    # An incomplete read (3) wins over --fail-on (4): a partial report may miss findings, and
    # a script must learn that first; both are non-zero, so a CI gate fails either way.
    return exit_status("analyze", report.warnings) or fail_on_status(
        "analyze", [f.severity for f in report.findings], args.fail_on
    )


def _analyze(archive: Path, options: AnalyzerOptions, identity: Path | None) -> Report:
    from forensic_checkpoint.analysis import analyze
    from forensic_checkpoint.analysis.commands.heap import tune_for

    tune_for([archive])
    if identity is None:
        return analyze(archive, options)
    from forensic_checkpoint.agent.evidence.encryption import decrypted_path

    with decrypted_path(archive, identity) as plain:
        return analyze(plain, options)


def _exports(report: Report, args: argparse.Namespace) -> None:
    """Write the --export-* files (from the same, redacted unless --reveal, report).

    Each exporter is imported only when asked for, so a plain analyze pays for none of them.
    """
    from forensic_checkpoint.cli.flags import write_output

    if args.export_timesketch is not None:
        from forensic_checkpoint.analysis.presentation.timesketch import to_jsonl

        write_output(to_jsonl(report), args.export_timesketch)
    if args.export_stix is not None:
        from forensic_checkpoint.analysis.presentation.stix import to_json

        write_output(to_json(report), args.export_stix)
    if args.export_html is not None:
        from forensic_checkpoint.analysis.presentation.html import to_html

        write_output(to_html(report), args.export_html)
