"""The `forensic-checkpoint` command.

Each subcommand lives in its own module under ``forensic_checkpoint.cli`` and exposes
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Only the module of the chosen
subcommand is imported, so that `analyze` on a small archive does not pay for kopf, the
kubernetes client or aiohttp.

Errors from the project's hierarchy (and the OS's, such as a file that cannot be written)
become a one-line message and exit code 1; anything else is a bug and says so in one line,
never a traceback (``FORENSIC_CHECKPOINT_DEBUG=1`` shows it). Usage errors exit 2 (argparse's
convention). `analyze` and `search` exit 3 when they wrote their output but
could not read the whole archive (its warnings say what is missing): a partial answer is never
passed off as a complete one with exit code 0.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType

from forensic_checkpoint import __version__

#: subcommand name -> module under forensic_checkpoint.cli
SUBCOMMANDS: dict[str, str] = {
    "analyze": "analyze",
    "diff": "diff",
    "show-file": "show_file",
    "search": "search",
    "list": "list_checkpoints",
    "verify": "verify",
    "operator": "operator",
    "agent": "agent",
    "criu-log-reader": "criu_log_reader",
    "nodes": "nodes",
    "uninstall-cleanup": "uninstall_cleanup",
    "completion": "completion",
}

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3


def exit_status(command: str, warnings: Sequence[str]) -> int:
    """0, or EXIT_INCOMPLETE with a one-line message on stderr when ``warnings`` say that part
    of the archive could not be read (the output is written either way)."""
    if not warnings:
        return 0
    more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
    print(
        f"forensic-checkpoint {command}: error: incomplete, part of the archive could not be "
        f"read: {warnings[0]}{more}",
        file=sys.stderr,
    )
    return EXIT_INCOMPLETE


def _top_parser(prog: str, description: str, names: Iterable[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("command", choices=sorted(names), help="subcommand")
    return parser


def main(argv: list[str] | None = None) -> int:
    modules = {name: f"forensic_checkpoint.cli.{module}" for name, module in SUBCOMMANDS.items()}
    return dispatch(
        argv,
        prog="forensic-checkpoint",
        description="Capture and analyse forensic container checkpoints.",
        modules=modules,
    )


def dispatch(
    argv: list[str] | None, *, prog: str, description: str, modules: Mapping[str, str]
) -> int:
    """Run the subcommand ``argv[0]`` names (``modules``: name -> module path); the dev
    harness's command line dispatches through here too."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in modules:
        _top_parser(prog, description, modules).parse_args(args_list)  # usage or version, exits
        return EXIT_USAGE
    name, rest = args_list[0], args_list[1:]
    try:
        module: ModuleType = importlib.import_module(modules[name])
        parser = argparse.ArgumentParser(prog=f"{prog} {name}", description=module.HELP)
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        return int(module.run(args))
    except BaseException as exc:
        return boundary(f"{prog} {name}", exc)


def fail(where: str, message: str) -> int:
    """Print ``where: error: message`` as one line on stderr; EXIT_ERROR."""
    print(f"{where}: error: {one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def one_line(message: str) -> str:
    """A library's multi-line message (a YARA compiler diagnostic, a pydantic error) as one
    line, so that scripts reading stderr get one line per error."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def boundary(where: str, exc: BaseException) -> int:
    """The CLI boundary's translation of an exception into an exit code and one line on stderr:
    the project's errors, the OS's (a file that cannot be written) and a missing extra are the
    user's to fix; anything else is a bug, said so in one line (FORENSIC_CHECKPOINT_DEBUG=1
    shows the traceback)."""
    from forensic_checkpoint.errors import ForensicCheckpointError

    if isinstance(exc, SystemExit):
        raise exc  # argparse's usage errors (exit 2), --help, --version
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, BrokenPipeError):
        # `analyze ... | head` is normal use; stay quiet like other Unix tools.
        _silence_stdout()
        return 0
    if isinstance(exc, ForensicCheckpointError):
        return fail(where, exc.message)
    if isinstance(exc, ModuleNotFoundError):
        from forensic_checkpoint.cli.extras import missing_extra

        # A cluster command of a base install: the extra to install, not a bug.
        if (remedy := missing_extra(exc)) is not None:
            return fail(where, remedy)
    if isinstance(exc, OSError):
        name = f"{exc.filename}: " if exc.filename else ""
        return fail(where, f"{name}{exc.strerror or exc}")
    return internal_error(where, exc)


def internal_error(where: str, exc: BaseException) -> int:
    import os

    if os.environ.get("FORENSIC_CHECKPOINT_DEBUG"):
        raise exc
    return fail(
        where,
        f"internal error ({type(exc).__name__}: {exc}); this is a bug, please report it with "
        "the output of the same command under FORENSIC_CHECKPOINT_DEBUG=1",
    )


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so that the interpreter's final flush does not
    print a second error."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
