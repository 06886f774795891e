"""The `forensic-checkpoint` command.

Each subcommand lives in its own module under ``forensic_checkpoint.cli`` and exposes
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Only the module of the chosen
subcommand is imported, so that `analyze` on a small archive does not pay for kopf, the
kubernetes client or aiohttp.

Errors from the project's hierarchy become a one-line message and exit code 1; usage errors
exit 2 (argparse's convention). `analyze` and `search` exit 3 when they wrote their output but
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
    from forensic_checkpoint.errors import ForensicCheckpointError

    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in modules:
        _top_parser(prog, description, modules).parse_args(args_list)  # usage or version, exits
        return EXIT_USAGE
    from forensic_checkpoint.cli.extras import missing_extra

    name, rest = args_list[0], args_list[1:]
    try:
        module: ModuleType = importlib.import_module(modules[name])
        parser = argparse.ArgumentParser(prog=f"{prog} {name}", description=module.HELP)
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        return int(module.run(args))
    except ForensicCheckpointError as exc:
        print(f"{prog} {name}: error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except ModuleNotFoundError as exc:
        if (remedy := missing_extra(exc)) is None:
            raise
        print(f"{prog} {name}: error: {remedy}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `analyze ... | head` is normal use; stay quiet like other Unix tools.
        return 0


if __name__ == "__main__":
    sys.exit(main())
