"""A private dev cluster for the install tests.

Not the session ``dev_cluster``: that one has the CRDs applied outside Helm, and Helm refuses to
take over objects it did not create. This one starts without CRDs (seconds, one node), so the
chart installs, upgrades and uninstalls everything itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.cluster.control_plane import DevCluster


@pytest.fixture(scope="module")
def install_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    if binaries.missing() and not binaries.go_available():
        pytest.skip("cluster tools are not built and no Go toolchain is installed to build them")
    cluster = DevCluster.start(
        tmp_path_factory.mktemp("install-cluster"), nodes=1, crds_dir=None, die_with_parent=True
    )
    try:
        yield cluster
    finally:
        cluster.stop()
