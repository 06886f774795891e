"""Static checks of the e2e scripts: shellcheck-clean, both cluster providers (kind.sh on a
machine with Docker, real-cluster.sh here) on the one step library, and the kind node image's
Dockerfile hadolint-clean."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .chart import REPO
from .test_image import hadolint

SCRIPTS = [
    REPO / "e2e" / "kind.sh",
    REPO / "e2e" / "real-cluster.sh",
    REPO / "e2e" / "steps.sh",
    REPO / "e2e" / "install-chart.sh",
    REPO / "e2e" / "assert-blog.sh",
    REPO / "deploy" / "image" / "install-python-env.sh",
]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="apt-get install shellcheck")
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_shellcheck_clean(script: object) -> None:
    result = subprocess.run(
        ["shellcheck", "-x", str(script)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, "")


def test_kind_node_dockerfile_is_hadolint_clean() -> None:
    result = hadolint(REPO / "e2e" / "node.Dockerfile")
    assert (result.returncode, result.stdout) == (0, "")


def test_both_providers_run_the_one_step_library() -> None:
    steps = (REPO / "e2e" / "steps.sh").read_text()
    assert '"$fc_here/install-chart.sh"' in steps
    assert 'kw apply -f "$fc_here/forensiccheckpoint.yaml"' in steps
    assert '"$fc_here/assert-blog.sh" "$FC_WORKLOADS"' in steps
    # get-archive goes through the API server: no step needs the cluster's DNS on this machine.
    assert "provider_with_cluster_dns" not in steps
    hooks = ("provider_values()", "provider_service_url()")
    for provider in ("kind.sh", "real-cluster.sh"):
        text = (REPO / "e2e" / provider).read_text()
        assert 'source "$here/steps.sh"\nfc_all\n' in text, provider
        assert all(hook in text for hook in hooks), provider
