"""Every ForensicCheckpoint-group object shown in README.md and docs/ is accepted by the API
server as written (server-side dry run against the dev cluster's CRDs): a newcomer's first
copy and paste must not be rejected. The sample output of ``kubectl get fcp`` in the docs has
the CRD's columns (``test_kubectl_ux.py`` checks the real kubectl prints those)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.cluster.testing import ClusterHandle

REPO = Path(__file__).resolve().parents[2]
GROUP = "forensic-checkpoint.dev"


def _examples() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object (apiVersion and kind, of any group) in a ```yaml block; the
    blocks without one are fragments of Helm values or of other tools' configuration."""
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in re.findall(r"```ya?ml\n(.*?)```", doc.read_text(), re.S):
            for obj in yaml.safe_load_all(block):
                if isinstance(obj, dict) and obj.get("apiVersion") and obj.get("kind"):
                    found.append((f"{doc.name}:{obj['kind']}/{obj['metadata']['name']}", obj))
    return found


EXAMPLES = _examples()


def documented_outputs(command: str) -> list[tuple[str, list[str]]]:
    """(file, column titles) of every sample output of ``$ <command>`` in README.md and docs/."""
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        pattern = rf"^\$ {re.escape(command)}(?:\s+#.*)?\n(NAME .*)$"
        for match in re.finditer(pattern, doc.read_text(), re.M):
            found.append((doc.name, match.group(1).split()))
    return found


def printer_columns(*, wide: bool) -> list[str]:
    """The column titles kubectl prints for ForensicCheckpoints (``-o wide``: priority 1 too)."""
    columns = ForensicCheckpoint.crd.printer_columns
    return ["NAME", *(c.name.upper() for c in columns if wide or c.priority == 0)]


@pytest.mark.parametrize("wide", [False, True], ids=["get", "wide"])
def test_documented_get_output_has_the_crd_columns(wide: bool) -> None:
    command = "kubectl get fcp -o wide" if wide else "kubectl get fcp"
    outputs = documented_outputs(command)
    assert any(name == "README.md" for name, _ in outputs), outputs
    for name, header in outputs:
        assert header == printer_columns(wide=wide), name


def test_the_docs_show_examples() -> None:
    assert any(name.startswith("README.md:ForensicCheckpoint/") for name, _ in EXAMPLES)


@pytest.mark.parametrize(("name", "obj"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_is_accepted_by_the_api_server(
    dev_cluster: ClusterHandle, name: str, obj: dict[str, Any]
) -> None:
    """``kubectl create --dry-run=server --validate=strict``: the API server's own validation
    (schema, unknown fields, CEL rules, admission) of the object as written, namespaced ones in
    the session's namespace."""
    body = {**obj, "metadata": {**obj["metadata"]}}
    body["metadata"].pop("namespace", None)
    done = subprocess.run(
        [str(binaries.locate("kubectl")), "--kubeconfig", str(dev_cluster.kubeconfig),
         "-n", dev_cluster.namespace, "create", "--dry-run=server", "--validate=strict",
         "-o", "name", "-f", "-"],
        input=json.dumps(body), capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, f"{name}: {done.stderr}"
    assert done.stdout.strip().endswith(f"/{obj['metadata']['name']}")
