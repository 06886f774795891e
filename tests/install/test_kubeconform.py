"""``kubeconform -strict`` on the rendered chart (every CI value set) and on deploy/, against
schemas made offline: Kubernetes' from the dev cluster's ``/openapi/v2``, ours from crds/
(``forensic_checkpoint_dev.kubeconform_schemas``). Any kubeconform error fails the test."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from forensic_checkpoint_dev import kubeconform_schemas
from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.cluster.control_plane import DevCluster

from .chart import CI_VALUES, REPO, kubectl, run, template

DATA = Path(__file__).parent / "data"

#: The Prometheus Operator's CRDs, cut down to the fields the chart sets (upstream names).
MONITORING_CRDS = [DATA / "servicemonitor-crd.yaml", DATA / "prometheusrule-crd.yaml"]
#: Every optional object of the chart, on top of each value set.
EVERYTHING = [
    "alerts.enabled=true",
    "alerts.tokenSecret.name=t",
    "networkPolicy.enabled=true",
    "grafanaDashboard.enabled=true",
    "serviceMonitor.enabled=true",
    "prometheusRule.enabled=true",
]


def kubeconform() -> Path:
    tool = binaries.locate("kubeconform")
    if not os.access(tool, os.X_OK):
        pytest.skip(f"{tool} is not built: run `make check-tools`")
    return tool


@pytest.fixture(scope="module")
def schemas(install_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    document = json.loads(
        run(kubectl(), "get", "--raw", "/openapi/v2", kubeconfig=install_cluster.kubeconfig).stdout
    )
    directory = tmp_path_factory.mktemp("kubeconform-schemas")
    crds = [*sorted((REPO / "crds").glob("*.yaml")), *MONITORING_CRDS]
    written = kubeconform_schemas.write(directory, document, crds)
    assert written > 50
    return directory


def check(schemas: Path, manifest: str, tmp_path: Path) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(manifest)
    result = subprocess.run(
        [str(kubeconform()), "-strict", "-summary", "-output", "text",
         "-schema-location", str(schemas / kubeconform_schemas.LOCATION), str(path)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout


@pytest.mark.parametrize(
    "values", [None, *CI_VALUES], ids=["defaults", *(p.stem for p in CI_VALUES)]
)
@pytest.mark.parametrize("everything", [False, True], ids=["plain", "everything"])
def test_rendered_chart_is_valid(
    schemas: Path, tmp_path: Path, values: Path | None, everything: bool
) -> None:
    manifest = template(
        *([values] if values else []),
        set_values=EVERYTHING if everything else [],
        include_tests=everything,
    )
    check(schemas, manifest, tmp_path)


def test_deploy_manifests_are_valid(schemas: Path, tmp_path: Path) -> None:
    files = [
        REPO / "deploy" / "forensic-checkpoint.yaml",
        *sorted((REPO / "deploy" / "rbac").glob("*.yaml")),
    ]
    check(schemas, "\n---\n".join(f.read_text() for f in files), tmp_path)


def test_strict_refuses_an_unknown_field(schemas: Path, tmp_path: Path) -> None:
    """The schemas are strict: a misspelt field is an error, in a Kubernetes kind and in ours."""
    for doc in (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {}\n",
        "apiVersion: forensic-checkpoint.dev/v1alpha1\nkind: ForensicCheckpoint\n"
        "metadata: {name: x}\nspec: {podName: p, containerName: c, bogus: 1}\n",
    ):
        with pytest.raises(AssertionError, match="Invalid: 1"):
            check(schemas, doc, tmp_path)
