"""Static checks of what only a machine with Docker runs: the e2e and image scripts are
shellcheck-clean and the kind node image's Dockerfile is hadolint-clean."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .chart import REPO
from .test_image import hadolint

SCRIPTS = [
    REPO / "e2e" / "kind.sh",
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


def test_kind_script_uses_the_steps_the_dev_cluster_tests_run() -> None:
    text = (REPO / "e2e" / "kind.sh").read_text()
    assert '"$here/install-chart.sh"' in text
    assert 'kubectl -n default apply -f "$here/forensiccheckpoint.yaml"' in text
    assert '"$here/assert-blog.sh" default' in text
