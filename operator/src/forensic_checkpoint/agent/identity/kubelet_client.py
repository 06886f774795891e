"""``--kubelet-client-certificate=csr``: the agent's client certificate for its kubelet, user
``forensic-checkpoint:agent:<node>`` in group ``forensic-checkpoint:agents`` (bound to
``create nodes/checkpoint``), short-lived, asked for and renewed with a new key through the
operator's signer ``forensic-checkpoint.dev/kubelet-client`` (:mod:`.renewing`). Its CA is in
the kubelets' client CA bundle only, so the certificate is worthless against the API server.
The kubelet client (``agent.kubelet.client``) loads :attr:`pem_file` on every call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from forensic_checkpoint.agent.identity.renewing import CsrSettings, RenewedCertificate
from forensic_checkpoint.agent.jobs import utcnow
from forensic_checkpoint.agent.ports import CsrClient
from forensic_checkpoint.domain.identity.profiles import KUBELET_CLIENT


class KubeletClientCertificate(RenewedCertificate):
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
            node_name,
            directory,
            csrs,
            settings,
            profile=KUBELET_CLIENT,
            file_name="kubelet-client",
            clock=clock,
        )
