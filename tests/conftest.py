"""Session-wide fixtures shared by every test package.

``dev_cluster``: a real kube-apiserver + etcd + kube-controller-manager on loopback with two
fake kubelet nodes (``node-1``, ``node-2``), started once per session and always stopped, or
the cluster named by ``FORENSIC_TEST_KUBECONFIG``. Tests using it are marked ``cluster``. See
docs/dev-cluster.md and ``forensic_checkpoint_dev.cluster.testing.ClusterHandle``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from xdist.scheduler import LoadFileScheduling  # type: ignore[import-untyped]

from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.cluster.testing import (
    EXTERNAL_KUBECONFIG_ENV,
    ClusterHandle,
    session_cluster,
)

# pytest-xdist's workers set COLUMNS=80, and the CLI's text tables fit $COLUMNS (as ls does):
# tests see the default width unless they set it (tests/cli/test_terminal_output.py).
os.environ.pop("COLUMNS", None)

#: Fixtures that start a dev cluster (or stand for one). A test that uses any of them, directly
#: or through another fixture, is marked ``cluster``; the guard below fails a test that starts a
#: cluster without being marked, so a new cluster fixture cannot slip into the fast tier.
CLUSTER_FIXTURES = frozenset(
    {"dev_cluster", "local", "stack", "install_cluster", "real_env", "ha_stack"}
)
#: Fixtures that start moto's S3 server (seconds of start-up, multi-MiB uploads). A test that
#: uses one, or a hypothesis ``@given`` test (hundreds of examples), is marked ``slow``: both
#: stay in ``make test`` and leave ``make test-fast``.
SLOW_FIXTURES = frozenset({"s3_endpoint"})
#: The real-node tests: one real node per machine (a lock), so under pytest-xdist they form one
#: work unit, run in their order on one worker (see RealNodeFirst).
REALNODE_DIR = "tests/realnode"
#: Test files that build wheels and virtualenvs (python -m build, pip: CPU and PyPI at once).
#: Under pytest-xdist they too are one unit, after the real node's: side by side on two workers
#: (and a busy machine) each ran past the 300 s per-test timeout.
PACKAGING_UNIT = "tests/install: wheels and virtualenvs"
PACKAGING_FILES = frozenset(
    f"tests/install/{name}.py"
    for name in ("test_packaging", "test_wheel", "test_image", "test_krew_plugin")
)
_current: list[pytest.Item] = []


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to under pytest-xdist (``make test``)."""
    path = nodeid.split("::", 1)[0]
    if path.startswith(REALNODE_DIR + "/"):
        return REALNODE_DIR
    return PACKAGING_UNIT if path in PACKAGING_FILES else path


class RealNodeFirst(LoadFileScheduling):  # type: ignore[misc]  # xdist's classes are untyped
    """``make test``'s distribution (``-n N --dist loadfile``): each test file goes whole to one
    worker (its module-scoped clusters start once); all of tests/realnode is one unit, and the
    wheel and virtualenv builds another (``work_unit``). Units go out in collection order, not by
    their test count, and the collection puts those two first, so that their serial chains
    overlap the rest of the suite instead of trailing it."""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)

    def schedule(self) -> None:
        self.config.option.loadscopereorder = False
        super().schedule()


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadFileScheduling | None:
    if config.getoption("dist") == "loadfile":
        return RealNodeFirst(config, log)
    return None  # pytest-xdist's own (make test-fast: -n 2, no real node, no cluster)


def pytest_itemcollected(item: pytest.Item) -> None:
    fixtures = set(getattr(item, "fixturenames", ()))
    if CLUSTER_FIXTURES & fixtures:
        item.add_marker(pytest.mark.cluster)
    hypothesis = getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
    if hypothesis or SLOW_FIXTURES & fixtures:
        item.add_marker(pytest.mark.slow)
    if item.nodeid.startswith(REALNODE_DIR + "/"):
        # For `--dist loadgroup`: the same one-worker rule as RealNodeFirst.
        item.add_marker(pytest.mark.xdist_group("realnode"))


def pytest_configure(config: pytest.Config) -> None:
    started = DevCluster.start.__func__  # type: ignore[attr-defined]

    def guarded(cls: type[DevCluster], *args: Any, **kwargs: Any) -> DevCluster:
        item = _current[-1] if _current else None
        if item is not None and item.get_closest_marker("cluster") is None:
            raise AssertionError(
                f"{item.nodeid} starts a dev cluster but is not marked `cluster`: add the "
                "fixture that starts it to CLUSTER_FIXTURES in tests/conftest.py"
            )
        return started(cls, *args, **kwargs)  # type: ignore[no-any-return]

    DevCluster.start = classmethod(guarded)  # type: ignore[assignment,method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    _current.append(item)  # session fixtures start in the setup of their first test
    try:
        return (yield)
    finally:
        _current.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _current.append(item)  # and some tests start their own
    try:
        return (yield)
    finally:
        _current.pop()


@pytest.hookimpl(trylast=True)  # after -m/-k deselection and tests/realnode's own order
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist the real-node tests come first, then the wheel and virtualenv builds,
    each in their own order (RealNodeFirst).
    Then build missing cluster binaries (minutes, once per machine) before any test runs, so the
    build is not cut short by a per-test timeout. Only when a selected test needs the cluster."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        first = {REALNODE_DIR: 0, PACKAGING_UNIT: 1}
        items.sort(key=lambda item: first.get(work_unit(item.nodeid), 2))  # stable: order kept
    if os.environ.get(EXTERNAL_KUBECONFIG_ENV) or not binaries.missing():
        return
    if binaries.go_available() and any(
        "dev_cluster" in getattr(item, "fixturenames", ()) for item in items
    ):
        binaries.ensure(build=True)


@pytest.fixture(scope="session")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    if not os.environ.get(EXTERNAL_KUBECONFIG_ENV) and binaries.missing():
        if not binaries.go_available():
            pytest.skip(
                "cluster tools are not built and no Go toolchain is installed to build them"
            )
        binaries.ensure(build=True)  # normally done at collection already
    started = time.monotonic()
    with session_cluster(tmp_path_factory.mktemp("dev-cluster"), nodes=2) as handle:
        print(
            f"\ndev cluster ready in {time.monotonic() - started:.1f} s ({handle.server})",
            file=sys.stderr,
        )
        yield handle


@pytest.fixture(scope="module")
def local(dev_cluster: ClusterHandle) -> ClusterHandle:
    """The dev cluster when it is our local one, with fake kubelet nodes; tests that talk to
    those nodes skip on an external cluster (``FORENSIC_TEST_KUBECONFIG``)."""
    if not dev_cluster.local:
        pytest.skip("needs the local dev cluster's fake nodes")
    return dev_cluster
