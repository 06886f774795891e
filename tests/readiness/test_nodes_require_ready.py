"""`forensic-checkpoint nodes --require-ready` (the chart's helm test): 1 unless a node is Ready."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.cli import nodes as nodes_cli


def _node(name: str, status: str | None) -> ForensicNode:
    conditions = (
        []
        if status is None
        else [
            {
                "type": "Ready",
                "status": status,
                "reason": "Ready" if status == "True" else "CheckpointingDisabled",
                "message": "m",
                "lastTransitionTime": datetime.now(UTC).isoformat(),
            }
        ]
    )
    return ForensicNode.model_validate(
        {"metadata": {"name": name}, "status": {"conditions": conditions}}
    )


@pytest.mark.parametrize(
    ("statuses", "required", "code"),
    [
        ([], True, 1),
        (["False", None], True, 1),
        (["Unknown"], True, 1),
        (["False", "True"], True, 0),
        ([], False, 0),
        (["False"], False, 0),
    ],
)
@pytest.mark.parametrize("output", ["table", "json"])
def test_require_ready_exit_status(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    statuses: list[str | None],
    *,
    required: bool,
    code: int,
    output: str,
) -> None:
    listed = [_node(f"n{i}", s) for i, s in enumerate(statuses)]

    class FakeNodes:
        def __init__(self, api: Any) -> None:
            pass

        def list(self) -> list[ForensicNode]:
            return listed

    monkeypatch.setattr(nodes_cli, "ForensicNodes", FakeNodes)
    assert nodes_cli.print_nodes(object(), output, require_ready=required) == code  # type: ignore[arg-type]
    assert ("no ForensicNode is Ready" in capsys.readouterr().err) == bool(code)
