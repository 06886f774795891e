"""How ``make test`` spreads the suite over pytest-xdist workers (tests/conftest.py): the
real-node tests (one real node per machine) are one unit of work, on one worker, in their own
order and first; every other test file goes whole to one worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest
from tests.conftest import (
    PACKAGING_UNIT,
    REALNODE_DIR,
    RealNodeFirst,
    pytest_collection_modifyitems,
)


def scope(nodeid: str) -> str:
    return RealNodeFirst._split_scope(cast(RealNodeFirst, None), nodeid)


def test_the_real_node_tests_are_one_unit_and_other_tests_go_by_file() -> None:
    assert {
        scope("tests/realnode/test_in_cluster.py::test_the_chart_runs_the_whole_flow"),
        scope("tests/realnode/test_capture.py::test_capture[kubelet]"),
        scope("tests/realnode/test_lifecycle.py::Lifecycle::test_down"),
    } == {REALNODE_DIR}
    assert scope("tests/agent/test_agent_cluster.py::test_x[a::b]") == (
        "tests/agent/test_agent_cluster.py"
    )
    assert scope("tests/realnodes_elsewhere/test_a.py::t") == "tests/realnodes_elsewhere/test_a.py"


def test_the_wheel_and_virtualenv_builds_are_one_unit() -> None:
    assert {
        scope("tests/install/test_packaging.py::test_x"),
        scope("tests/install/test_wheel.py::test_y"),
        scope("tests/install/test_image.py::test_z"),
        scope("tests/install/test_krew_plugin.py::test_w"),
    } == {PACKAGING_UNIT}
    assert scope("tests/install/test_image_archive.py::t") == "tests/install/test_image_archive.py"


@dataclass
class Item:
    nodeid: str
    fixturenames: list[str] = field(default_factory=list)


NODEIDS = [
    "tests/agent/test_a.py::t",
    "tests/install/test_wheel.py::t",
    "tests/realnode/test_in_cluster.py::t",
    "tests/realnode/test_capture.py::t",
    "tests/zz/test_z.py::t",
]


def test_under_xdist_the_real_node_tests_come_first_then_the_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    items = [Item(n) for n in NODEIDS]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items] == [NODEIDS[i] for i in (2, 3, 1, 0, 4)]


def test_in_one_process_the_order_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    items = [Item(n) for n in NODEIDS]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items] == NODEIDS
