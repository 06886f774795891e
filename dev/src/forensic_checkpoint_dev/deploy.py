"""`forensic-checkpoint-dev render-deploy`: deploy/forensic-checkpoint.yaml from the Helm chart
with deploy/values.yaml (``make deploy``; tests/install checks that the file has not drifted).

The chart reads crds/ through the symlink charts/forensic-checkpoint/files/crds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from forensic_checkpoint.errors import ToolError
from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.repo import REPO_ROOT

HELP = "Render deploy/forensic-checkpoint.yaml from the Helm chart and deploy/values.yaml."

CHART = REPO_ROOT / "charts" / "forensic-checkpoint"
DEPLOY_VALUES = REPO_ROOT / "deploy" / "values.yaml"
DEPLOY_MANIFEST = REPO_ROOT / "deploy" / "forensic-checkpoint.yaml"
NAMESPACE = "forensic-checkpoint"
HEADER = (
    "# Generated from charts/forensic-checkpoint with deploy/values.yaml by `make deploy`;\n"
    "# do not edit (tests/install checks it matches the chart).\n"
)


def helm_template(
    *values_files: Path,
    release: str = "fc",
    namespace: str = NAMESPACE,
    set_values: Sequence[str] = (),
    show_only: str | None = None,
    include_tests: bool = False,
) -> str:
    """`helm template` of the chart; ``ToolError`` with helm's stderr when it refuses. Helm
    renders offline for Kubernetes 1.20 unless told otherwise, which the chart's kubeVersion
    refuses: the dev cluster's pinned version is given, as a GitOps renderer gives its own.
    The `helm test` hook is left out (``--skip-tests``) unless ``include_tests``: applied as a
    manifest it would run at once."""
    kube_version = binaries.pinned_versions()["KUBERNETES_VERSION"]
    args = ["template", release, str(CHART), "--namespace", namespace]
    args += ["--kube-version", kube_version]
    if not include_tests:
        args.append("--skip-tests")
    if show_only:
        args += ["--show-only", show_only]
    for f in values_files:
        args += ["--values", str(f)]
    for s in set_values:
        args += ["--set", s]
    result = subprocess.run(
        [str(binaries.locate("helm")), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    if result.returncode != 0:
        raise ToolError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result.stdout


def render_deploy() -> str:
    return HEADER + helm_template(DEPLOY_VALUES, release="forensic-checkpoint")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        default=str(DEPLOY_MANIFEST),
        help="where to write it; - for stdout (default deploy/forensic-checkpoint.yaml)",
    )


def run(args: argparse.Namespace) -> int:
    text = render_deploy()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0
