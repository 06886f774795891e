"""Every ForensicCheckpoint-group object shown in README.md and docs/ is accepted by the API
server as written (server-side dry run against the dev cluster's CRDs): a newcomer's first
copy and paste must not be rejected."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster.testing import ClusterHandle

REPO = Path(__file__).resolve().parents[2]
GROUP = "forensic-checkpoint.dev"
#: kind -> (plural, namespaced)
RESOURCES = {
    "ForensicCheckpoint": ("forensiccheckpoints", True),
    "ForensicCapturePolicy": ("forensiccapturepolicies", False),
    "ForensicNode": ("forensicnodes", False),
}


def _examples() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in re.findall(r"```ya?ml\n(.*?)```", doc.read_text(), re.S):
            for obj in yaml.safe_load_all(block):
                if isinstance(obj, dict) and str(obj.get("apiVersion", "")).startswith(GROUP):
                    found.append((f"{doc.name}:{obj['kind']}/{obj['metadata']['name']}", obj))
    return found


EXAMPLES = _examples()


def test_the_docs_show_examples() -> None:
    assert any(name.startswith("README.md:ForensicCheckpoint/") for name, _ in EXAMPLES)


@pytest.mark.parametrize(("name", "obj"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_is_accepted_by_the_api_server(
    dev_cluster: ClusterHandle, name: str, obj: dict[str, Any]
) -> None:
    plural, namespaced = RESOURCES[obj["kind"]]
    version = obj["apiVersion"].split("/", 1)[1]
    body = {**obj, "metadata": {**obj["metadata"]}}
    body["metadata"].pop("namespace", None)
    scope = f"/namespaces/{dev_cluster.namespace}" if namespaced else ""
    path = f"/apis/{GROUP}/{version}{scope}/{plural}"
    created = apiserver.request(
        dev_cluster.admin_client(),
        "POST",
        path,
        body=body,
        query={"dryRun": "All", "fieldValidation": "Strict"},
    )
    assert created["metadata"]["name"] == obj["metadata"]["name"]
