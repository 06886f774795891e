"""``--serving-certificate=csr``: the agent's serving certificate, for its node's name only
(:func:`~forensic_checkpoint.agent_identity.agent_server_name`), asked for and renewed through
the operator's signer ``forensic-checkpoint.dev/agent-serving`` (:mod:`.renewing`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from forensic_checkpoint.agent.identity.renewing import CsrSettings, RenewedCertificate
from forensic_checkpoint.agent.jobs import utcnow
from forensic_checkpoint.agent.ports import CsrClient
from forensic_checkpoint.domain.identity.profiles import SERVING

__all__ = ["CsrSettings", "ServingCertificate"]


class ServingCertificate(RenewedCertificate):
    def __init__(
        self,
        node_name: str,
        directory: Path,
        csrs: CsrClient,
        settings: CsrSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(
            node_name, directory, csrs, settings, profile=SERVING, file_name="serving", clock=clock
        )
        self.server_name = self.subject.common_name
