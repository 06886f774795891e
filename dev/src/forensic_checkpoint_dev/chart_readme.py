"""Write charts/forensic-checkpoint/README.md from Chart.yaml and values.yaml, so the chart's
page lists every value with its type, default and the ``# --`` comment above it (the convention
helm-docs and Artifact Hub read). A test fails when the file is stale (``make chart-readme``).

A ``# --`` comment documents the key on the line after it; ``#`` lines right after it continue
it. A documented mapping is one row; an undocumented one is listed key by key, and a test wants
a comment for every row.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

import yaml

from forensic_checkpoint_dev.deploy import CHART

HELP = "Write the chart's README.md from Chart.yaml and values.yaml."
README = CHART / "README.md"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


@dataclass(frozen=True)
class Value:
    path: str
    type: str
    default: str
    description: str


def documented_keys(text: str) -> dict[str, str]:
    """Dotted key path -> its ``# --`` description, from the YAML's text."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped.removeprefix("#").strip())
            continue
        match = _KEY.match(line)
        if match is None:
            if stripped:  # a list item or a continuation: not a key
                pending = None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending is not None:
            found[".".join(k for _, k in stack)] = " ".join(p for p in pending if p)
        pending = None
    return found


def _leaves(values: Any, docs: dict[str, str], prefix: str = "") -> list[tuple[str, Any]]:
    """Each value the table lists: a documented key is one row even when it holds a mapping
    (``resources``); an undocumented mapping is listed key by key."""
    if isinstance(values, dict) and values and (not prefix or prefix not in docs):
        out: list[tuple[str, Any]] = []
        for key, value in values.items():
            out += _leaves(value, docs, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, values)]


def _type(value: Any) -> str:
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "string")):
        if isinstance(value, kind):
            return name
    return "list" if isinstance(value, list) else "object"


def chart_values(text: str) -> list[Value]:
    docs = documented_keys(text)
    values = []
    for path, value in _leaves(yaml.safe_load(text), docs):
        description = docs.get(path, "")
        default = json.dumps(value, separators=(", ", ": "))
        values.append(Value(path, _type(value), default, description))
    return values


def render() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    rows = [
        "| Key | Type | Default | Description |",
        "|-----|------|---------|-------------|",
    ]
    for v in chart_values((CHART / "values.yaml").read_text(encoding="utf-8")):
        description = v.description.replace("|", "\\|")
        rows.append(f"| `{v.path}` | {v.type} | `{v.default}` | {description} |")
    return "\n".join(
        [
            f"# {chart['name']}",
            "",
            "<!-- Generated from Chart.yaml and values.yaml by `make chart-readme`; "
            "do not edit. -->",
            "",
            f"![Version: {chart['version']}](https://img.shields.io/badge/Version-"
            f"{chart['version']}-informational) ![AppVersion: {chart['appVersion']}]"
            f"(https://img.shields.io/badge/AppVersion-{chart['appVersion']}-informational)",
            "",
            " ".join(chart["description"].split()),
            "",
            f"Kubernetes: `{chart['kubeVersion']}`. Installation, upgrades, credentials and "
            "security: [docs/install.md](../../docs/install.md) and "
            "[docs/security-model.md](../../docs/security-model.md).",
            "",
            "```sh",
            "helm install forensic-checkpoint charts/forensic-checkpoint \\",
            "  --namespace forensic-checkpoint --create-namespace",
            "```",
            "",
            "## Values",
            "",
            *rows,
            "",
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="fail if README.md is stale")


def run(args: argparse.Namespace) -> int:
    text = render()
    if args.check:
        if README.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"{README} is stale: run `make chart-readme`\n")
            return 1
        return 0
    README.write_text(text, encoding="utf-8")
    return 0
