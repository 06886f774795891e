"""One real node per machine: a second `cluster up --real-node` is refused in one line,
before it starts anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.realnode.support import RealNodeEnv

from forensic_checkpoint_dev.realnode import node as real_node


def test_a_second_real_node_is_refused_before_anything_starts(
    real_env: RealNodeEnv, tmp_path: Path
) -> None:
    directory = tmp_path / "second"
    # Refused at once, not waited for, whatever this run's own FORENSIC_REAL_NODE_WAIT says.
    env = {k: v for k, v in os.environ.items() if k != real_node.WAIT_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "forensic_checkpoint_dev", "cluster", "up", "--real-node",
         "--nodes", "0", "--dir", str(directory), "--no-build"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )  # fmt: skip
    assert result.returncode != 0
    assert "a real node already runs on this machine" in result.stderr
    assert str(real_env.cluster.dir) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (directory / "state.json").exists()
