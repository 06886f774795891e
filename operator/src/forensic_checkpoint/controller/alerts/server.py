"""Running the receiver inside the operator's event loop, on its own port."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from forensic_checkpoint.controller.alerts.backend import CaptureBackend
from forensic_checkpoint.controller.alerts.config import AlertReceiverConfig
from forensic_checkpoint.controller.alerts.receiver import AlertReceiver
from forensic_checkpoint.errors import ConfigError


@dataclass
class AlertServer:
    receiver: AlertReceiver
    runner: web.AppRunner
    #: The bound port (useful with ``port=0``).
    port: int
    scheme: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.receiver.close()


async def serve_alerts(
    config: AlertReceiverConfig,
    backend: CaptureBackend,
    *,
    registry: CollectorRegistry | None = None,
) -> AlertServer:
    """Start serving in the running event loop and return at once; ``stop()`` to end.

    From kopf: call it in an ``@kopf.on.startup()`` handler, keep the result in ``memo`` and
    ``await server.stop()`` in ``@kopf.on.cleanup()``.
    """
    receiver = AlertReceiver(config, backend, registry=registry)
    runner = web.AppRunner(receiver.app(), access_log=None, handle_signals=False)
    await runner.setup()
    ssl_context = config.ssl_context()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"alert receiver cannot listen on {config.host}:{config.port}: {exc}"
        ) from exc
    port = config.port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port = int(server.sockets[0].getsockname()[1])
    return AlertServer(receiver, runner, port, "https" if ssl_context else "http")
