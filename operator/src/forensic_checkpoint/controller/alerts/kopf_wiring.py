"""Running the receiver inside a kopf operator: in kopf's own event loop, started with the
operator and stopped with it.

The operator's runner calls ``register(registry, config, api)`` once, before
``kopf.operator(registry=registry, ...)``; nothing else changes.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from forensic_checkpoint.controller.alerts.backend import KubeCaptureBackend
from forensic_checkpoint.controller.alerts.config import AlertReceiverConfig
from forensic_checkpoint.controller.alerts.server import AlertServer, serve_alerts
from forensic_checkpoint.k8s.client import ApiClient

log = logging.getLogger(__name__)

_MEMO_KEY = "alert_server"


def register(registry: kopf.OperatorRegistry, config: AlertReceiverConfig, api: ApiClient) -> None:
    """Add start-up and clean-up handlers that serve the alert webhooks on ``config.port``.

    ``api`` is the client the receiver acts with (the operator's own identity, which then needs
    ``alert_captures.RBAC_RULES`` too).
    """
    config.validate()

    @kopf.on.startup(registry=registry)
    async def _start_alert_receiver(memo: Any, **_: Any) -> None:
        server = await serve_alerts(config, KubeCaptureBackend(api))
        memo[_MEMO_KEY] = server
        log.info("alert receiver listening on %s://%s:%d", server.scheme, config.host, server.port)

    @kopf.on.cleanup(registry=registry)
    async def _stop_alert_receiver(memo: Any, **_: Any) -> None:
        server: AlertServer | None = memo.get(_MEMO_KEY)
        if server is not None:
            await server.stop()
