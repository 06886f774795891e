"""The flags every subcommand of both CLIs spells the same way (issue 18, "CLI habits").

- ``-o/--output FORMAT``: the output format, as kubectl spells it (``json|yaml|text``).
- ``-O/--output-file FILE``: where the output goes, when not to stdout.
- ``--format FORMAT``: the former spelling of ``-o``; still works, with a warning on stderr.
- ``-o FILE`` (where ``-o`` used to name a file: ``analyze``, ``show-file``, ``kubectl forensic
  get-archive``): a value that looks like a path (it has a ``/`` or a ``.``) is still taken as
  the file, with a warning; any other value must be a format.
- ``ARCHIVE`` ``-``: the archive from stdin (:func:`archive_from`).
- ``--fail-on SEVERITY``: exit :data:`EXIT_FINDINGS` when a finding is at or above it.
- ``--color auto|always|never`` and the text's width (:func:`text_style`): colour only on a
  terminal unless ``always``, never with ``NO_COLOR``; tables fit ``$COLUMNS`` or the terminal.
- ``--kubeconfig``, ``--context``, ``-n/--namespace``: kubectl's, before or after a subcommand
  (:func:`add_kube_flags`; resolved by :mod:`forensic_checkpoint.k8s.kubeconfig`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forensic_checkpoint.analysis.presentation.style import TextStyle

FORMATS = ("text", "json", "yaml")

#: Exit code of ``--fail-on``: the command worked and found something at or above the severity.
EXIT_FINDINGS = 4


def _warn(parser: argparse.ArgumentParser, message: str) -> None:
    print(f"{parser.prog}: warning: {message}", file=sys.stderr)


class _Output(argparse.Action):
    """``-o FORMAT``; with ``legacy_file``, ``-o PATH`` (the former meaning) sets the file."""

    def __init__(self, *args: Any, legacy_file: bool = False, **kwargs: Any) -> None:
        self.formats: Sequence[str] = kwargs.pop("formats")
        self.legacy_file = legacy_file
        super().__init__(*args, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        value = str(values)
        if value in self.formats:
            setattr(namespace, self.dest, value)
        elif self.legacy_file and ("/" in value or "." in value):
            _warn(parser, f"-o is deprecated for a file, use -O/--output-file {value}")
            namespace.output_file = Path(value)
        else:
            parser.error(
                f"argument -o/--output: invalid choice: {value!r} "
                f"(choose from {', '.join(self.formats)}; a file is -O/--output-file FILE)"
            )


class _Deprecated(argparse.Action):
    """A former spelling: warns on stderr, then stores the value (``convert``ed) as the new
    flag would."""

    def __init__(self, *args: Any, replacement: str, convert: Any = str, **kwargs: Any) -> None:
        self.replacement = replacement
        self.convert = convert
        super().__init__(*args, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        _warn(parser, f"{option_string} is deprecated, use {self.replacement} {values}")
        setattr(namespace, self.dest, self.convert(str(values)))


def add_output_format(
    parser: argparse.ArgumentParser,
    formats: Sequence[str] = FORMATS,
    *,
    default: str = "text",
    legacy_file: bool = False,
) -> None:
    """``-o/--output FORMAT`` (dest ``output``) and its deprecated alias ``--format``."""
    parser.add_argument(
        "-o",
        "--output",
        action=_Output,
        formats=formats,
        legacy_file=legacy_file,
        default=default,
        metavar="{" + ",".join(formats) + "}",
        help=f"output format (default: {default})",
    )
    parser.add_argument(
        "--format",
        dest="output",
        action=_Deprecated,
        replacement="-o/--output",
        choices=formats,
        help="deprecated spelling of -o/--output",
    )


def add_output_file(parser: argparse.ArgumentParser, *, legacy_o: bool = False) -> None:
    """``-O/--output-file FILE`` (dest ``output_file``); with ``legacy_o`` also the former
    ``-o FILE`` of a command that has no output format."""
    parser.add_argument(
        "-O",
        "--output-file",
        type=Path,
        metavar="FILE",
        help="write to this file instead of stdout",
    )
    if legacy_o:
        parser.add_argument(
            "-o",
            dest="output_file",
            action=_Deprecated,
            replacement="-O/--output-file",
            convert=Path,
            metavar="FILE",
            help="deprecated spelling of -O/--output-file",
        )


def add_color(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the text output: auto (default) when stdout is a terminal and NO_COLOR "
        "is not set; always; never",
    )


def text_style(color: str, output_file: Path | None) -> TextStyle:
    """Width and colour of the text output, as ls and kubectl decide them: a file gets plain
    text of the default width; stdout gets $COLUMNS, else the terminal's width (the default on
    a pipe), and colour when ``--color=always``, or ``auto`` on a terminal without NO_COLOR
    (https://no-color.org) or TERM=dumb."""
    import os

    from forensic_checkpoint.analysis.presentation.style import DEFAULT_WIDTH, MIN_WIDTH, TextStyle

    if output_file is not None:
        return TextStyle(color=color == "always")
    tty = sys.stdout.isatty()
    width = DEFAULT_WIDTH
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        width = int(columns)
    elif tty:
        with contextlib.suppress(OSError, ValueError):
            width = os.get_terminal_size(sys.stdout.fileno()).columns or DEFAULT_WIDTH
    if color == "auto":
        on = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    else:
        on = color == "always"
    return TextStyle(width=max(width, MIN_WIDTH), color=on)


_CONTEXTS_NAMESPACE = "the context's, else default"


def add_kube_flags(
    parser: argparse.ArgumentParser,
    *,
    namespace: bool = True,
    subcommand: bool = False,
    namespace_default: str | None = None,
) -> None:
    """kubectl's ``--kubeconfig``, ``--context`` and ``-n/--namespace`` (None when not given).

    kubectl hands a plugin its arguments as typed (``kubectl forensic --context c nodes``:
    flags cannot come before the plugin's name), so the plugin takes them on its top parser
    and on every ``subcommand`` parser alike; there they default to SUPPRESS, so that a
    subcommand does not reset a value given before it.
    """
    default = argparse.SUPPRESS if subcommand else None
    parser.add_argument(
        "--kubeconfig",
        default=default,
        metavar="FILE",
        help="kubeconfig file (default: every file of $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument(
        "--context",
        default=default,
        metavar="NAME",
        help="kubeconfig context (default: its current-context)",
    )
    if namespace:
        parser.add_argument(
            "-n",
            "--namespace",
            default=default,
            metavar="NS",
            help=f"namespace (default: {namespace_default or _CONTEXTS_NAMESPACE})",
        )


def add_fail_on(parser: argparse.ArgumentParser) -> None:
    from forensic_checkpoint.analysis.model.findings import SEVERITIES

    parser.add_argument(
        "--fail-on",
        choices=SEVERITIES,
        metavar="SEVERITY",
        help=f"exit {EXIT_FINDINGS} when a finding is at or above SEVERITY "
        f"({'|'.join(SEVERITIES)}); an incomplete read (exit 3) wins",
    )


def fail_on_status(command: str, severities: Sequence[str], threshold: str | None) -> int:
    """0, or EXIT_FINDINGS with one line on stderr when a severity is at or above
    ``threshold``."""
    from forensic_checkpoint.analysis.model.findings import SEVERITY_RANK

    if threshold is None:
        return 0
    hits = [s for s in severities if SEVERITY_RANK[s] >= SEVERITY_RANK[threshold]]
    if not hits:
        return 0
    worst = max(hits, key=SEVERITY_RANK.__getitem__)
    print(
        f"forensic-checkpoint {command}: {len(hits)} finding(s) at or above {threshold} "
        f"(highest: {worst}); exit {EXIT_FINDINGS} (--fail-on)",
        file=sys.stderr,
    )
    return EXIT_FINDINGS


def write_output(text: str, path: Path | None) -> None:
    """``text`` to ``path``, or to stdout."""
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from forensic_checkpoint.errors import ConfigError

    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc


STDIN = Path("-")


@contextlib.contextmanager
def archive_from(path: Path) -> Iterator[Path]:
    """``path``, or for ``-`` the archive read from stdin into a private temporary file (the
    readers take a path and read some members twice, e.g. the hash and the scan, so a pipe is
    spooled once; the file is removed afterwards)."""
    if path != STDIN:
        yield path
        return
    import shutil
    import tempfile

    if sys.stdin.isatty():
        from forensic_checkpoint.errors import ConfigError

        raise ConfigError("archive '-' reads stdin, which is a terminal: pipe the archive in")
    with tempfile.TemporaryDirectory(prefix="forensic-checkpoint-stdin-") as tmp:
        spooled = Path(tmp) / "stdin-archive"
        with spooled.open("wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1024 * 1024)
        yield spooled
