"""The `forensic-checkpoint-dev` command: the development harness's entry points.

Each subcommand module exposes ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``,
as the product's subcommands do; dispatch and error reporting are the product's.
"""

from __future__ import annotations

import sys

from forensic_checkpoint.cli.main import dispatch

#: subcommand name -> module
SUBCOMMANDS: dict[str, str] = {
    "chart-readme": "forensic_checkpoint_dev.chart_readme",
    "cluster": "forensic_checkpoint_dev.cluster.command",
    "corpus": "forensic_checkpoint_dev.corpus.command",
    "demo": "forensic_checkpoint_dev.demo",
    "image": "forensic_checkpoint_dev.image",
    "plugin-dist": "forensic_checkpoint_dev.krew",
    "render-deploy": "forensic_checkpoint_dev.deploy",
}


def main(argv: list[str] | None = None) -> int:
    return dispatch(
        argv,
        prog="forensic-checkpoint-dev",
        description="Run forensic-checkpoint on a local dev cluster (development only).",
        modules=SUBCOMMANDS,
    )


if __name__ == "__main__":
    sys.exit(main())
