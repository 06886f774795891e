"""The operator's end-to-end fixture: a 3-node dev cluster of its own (the shared session
cluster has two nodes, and other packages' agents publish ForensicNodes there), the RBAC of
deploy/rbac, three agents and the operator as local processes, each with its own identity."""

from __future__ import annotations

import atexit
from collections.abc import Iterator

import pytest
from tests.operator.operator_e2e_support import NAMESPACE

from forensic_checkpoint.k8s.client import close
from forensic_checkpoint_dev.cluster import access, binaries
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.stack import LocalStack

NODES = ("node-1", "node-2", "node-3")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if binaries.missing():
        if not binaries.go_available():
            pytest.skip("cluster tools are not built and no Go toolchain is installed")
        binaries.ensure(build=True)
    root = tmp_path_factory.mktemp("operator-e2e")
    cluster = DevCluster.start(root / "cluster", nodes=len(NODES), die_with_parent=True)
    atexit.register(cluster.stop)
    local: LocalStack | None = None
    try:
        api = cluster.admin_client()
        access.ensure_namespace(api, NAMESPACE)
        close(api)
        local = LocalStack.prepare(cluster, root / "stack")
        for node in NODES:
            local.start_agent(node)
        # Finished captures are polled for retention facts every 2 s (300 s by default).
        local.archive_poll_interval = 2.0
        # A stopped agent's ForensicNode turns Ready Unknown after 10 s (5 missed beats).
        local.heartbeat_grace = 10.0
        local.start_operator([NAMESPACE], alerts=True)
        yield local
    finally:
        if local is not None:
            local.stop()
        cluster.stop()
        atexit.unregister(cluster.stop)
