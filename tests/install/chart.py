"""Rendering the Helm chart and driving helm/kubectl against a cluster, for tests/install.

The same commands the docs and e2e/kind.sh use: `helm template|install|upgrade|uninstall` and
`kubectl apply --dry-run=server`; only the kubeconfig differs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from forensic_checkpoint.errors import ToolError
from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.deploy import CHART, helm_template
from forensic_checkpoint_dev.repo import REPO_ROOT

REPO = REPO_ROOT
#: `helm uninstall` on the dev cluster: it runs no pod, so the chart's pre-delete hook Job (the
#: uninstall clean-up) would never finish; the real node's e2e run (e2e/steps.sh) runs it.
NO_POD_HOOKS = ("--no-hooks",)
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


def agent_containers(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The agent pod's ``agent`` container and its ``criu-log-reader`` (None without one)."""
    by_name = {c["name"]: c for c in spec["containers"]}
    assert set(by_name) <= {"agent", "criu-log-reader"}
    return by_name["agent"], by_name.get("criu-log-reader")


def helm() -> Path:
    return binaries.locate("helm")


def kubectl() -> Path:
    return binaries.locate("kubectl")


def run(
    tool: Path, *args: str, kubeconfig: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a tool; a non-zero exit fails with its stderr in the message."""
    env_args = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
    result = subprocess.run(
        [str(tool), *args, *env_args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{tool.name} {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        )
    return result


def template(*values_files: Path, **options: Any) -> str:
    """`helm template` (``deploy.helm_template``, the same options); a refusal fails the test
    with helm's stderr."""
    try:
        return helm_template(*values_files, **options)
    except ToolError as exc:
        raise AssertionError(exc.message) from exc


class StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key written twice in one mapping. PyYAML keeps the last one
    silently; kubeconform -strict, kubectl kustomize and many GitOps tools refuse the file."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def documents(text: str) -> list[dict[str, Any]]:
    """Every non-empty document of a rendered manifest; a duplicate key fails the test."""
    return [d for d in yaml.load_all(text, Loader=StrictLoader) if d]


def by_kind(docs: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def rules(docs: Sequence[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(role, rule) for every rule of every Role and ClusterRole."""
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc.get("rules") or []:
                yield doc, rule
