"""The real node: containerd, runc, CRIU and a real kubelet registered with the dev cluster.

One cluster for the package's tests (``make node-tools`` first; torn down after the last of
them, so that under pytest-xdist the worker that ran them goes on without it), with the operator
and the node's agent as local processes, exactly as ``forensic-checkpoint-dev demo`` runs them on
fake nodes. A machine
that cannot run a real node fails these tests with the one-line reason; set
``FORENSIC_SKIP_REAL_NODE=1`` to skip them there on purpose (CI never does).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.realnode.support import RealNodeEnv, real_node_env

from forensic_checkpoint_dev.realnode import node as real_node

SKIP_ENV = "FORENSIC_SKIP_REAL_NODE"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "realnode" in str(item.fspath):
            item.add_marker(pytest.mark.realnode)
            item.add_marker(pytest.mark.cluster)
    # test_in_cluster.py brings up (and down) a real node of its own: it runs before the
    # package's real node (real_env, torn down after the package's last test) takes the machine's
    # one.
    own = [item for item in items if Path(str(item.fspath)).name == "test_in_cluster.py"]
    items[:] = own + [item for item in items if item not in own]


@pytest.fixture(scope="package")
def real_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNodeEnv]:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: real-node tests skipped on purpose")
    try:
        with real_node_env(tmp_path_factory.mktemp("real")) as env:
            yield env
    except real_node.RealNodeUnavailable as exc:
        pytest.fail(f"this machine cannot run the real node: {exc}", pytrace=False)
