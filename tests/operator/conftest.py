"""The operator's end-to-end fixture: a 3-node dev cluster of its own (the shared session
cluster has two nodes, and other packages' agents publish ForensicNodes there), the RBAC of
deploy/rbac, three agents and the operator as local processes, each with its own identity."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.operator.operator_e2e_support import NAMESPACE, agents_stack

from forensic_checkpoint_dev.stack import LocalStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with agents_stack(tmp_path_factory.mktemp("operator-e2e"), NAMESPACE) as local:
        # Finished captures are polled for retention facts every 2 s (300 s by default).
        local.archive_poll_interval = 2.0
        # A stopped agent's ForensicNode turns Ready Unknown after 10 s (5 missed beats).
        local.heartbeat_grace = 10.0
        local.start_operator([NAMESPACE], alerts=True)
        yield local
