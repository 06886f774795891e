"""`forensic-checkpoint nodes`: which nodes can take a forensic checkpoint, and why not.

Reads every ForensicNode (one per node, written by that node's agent) and prints one line per
node: the Ready condition, then each readiness check as ``ok`` or its reason. ``-o json`` prints
the checks with their messages and remediation instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from forensic_checkpoint.domain.readiness import TABLE_COLUMNS, table_row
from forensic_checkpoint.k8s.client import ApiClient, close, from_environment
from forensic_checkpoint.k8s.nodes import ForensicNodes

HELP = "Show each node's capture readiness (its ForensicNode)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from forensic_checkpoint.cli.flags import FORMATS, add_kube_flags, add_output_format

    add_kube_flags(parser, namespace=False)  # ForensicNodes are cluster-scoped

    # "table" is the former name of "text", kept so that scripts still work.
    add_output_format(parser, (*FORMATS, "table"))
    parser.add_argument(
        "--require-ready",
        action="store_true",
        help="exit 1 unless at least one node is Ready (the chart's helm test)",
    )


def run(args: argparse.Namespace) -> int:
    api = from_environment(args.kubeconfig, context=args.context)
    try:
        return print_nodes(api, args.output, require_ready=args.require_ready)
    finally:
        close(api)


def run_plugin(api: ApiClient, args: argparse.Namespace) -> int:
    """``kubectl forensic nodes``: the same table with the plugin's client."""
    return print_nodes(api, args.output)


def print_nodes(api: ApiClient, output: str, *, require_ready: bool = False) -> int:
    """Print the readiness table (or JSON) of every ForensicNode; with ``require_ready``, 1 when
    no node is Ready."""
    nodes = sorted(ForensicNodes(api).list(), key=lambda n: str(n.metadata.get("name", "")))
    now = datetime.now(UTC)
    rows = [TABLE_COLUMNS, *(table_row(n, now=now) for n in nodes)]
    status = 1 if require_ready and not any(row[1] == "True" for row in rows[1:]) else 0
    if status:
        sys.stderr.write("no ForensicNode is Ready: no node can take a forensic checkpoint\n")
    if output in ("json", "yaml"):
        out = [
            {
                "node": n.metadata.get("name"),
                **(n.status.model_dump(mode="json", by_alias=True) if n.status else {}),
            }
            for n in nodes
        ]
        if output == "yaml":
            import yaml

            sys.stdout.write(yaml.safe_dump(out, sort_keys=False, width=100))
        else:
            json.dump(out, sys.stdout, indent=2)
            sys.stdout.write("\n")
        return status
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    for row in rows:
        line = "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip())
        sys.stdout.write("\n")
    if not nodes:
        sys.stderr.write("no ForensicNodes: is the forensic-checkpoint agent running?\n")
    return status
