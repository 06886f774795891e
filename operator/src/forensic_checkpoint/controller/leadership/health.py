"""The health port of a replica under leader election (kopf's own endpoint starts only with
kopf, i.e. only on the leader).

``/healthz``: 200 while the process runs, leader or standby (a standby is healthy: it is
waiting to take over, and restarting it would not help). ``/readyz``: 200 on the leader only,
for anyone who wants to know which replica acts; the chart's readiness probe uses ``/healthz``
(a never-ready standby would stall every rolling update and ``helm --wait``).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


async def serve_health(port: int, leading: Callable[[], bool]) -> web.AppRunner:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_request: web.Request) -> web.Response:
        if leading():
            return web.Response(text="leading")
        return web.Response(status=503, text="standby")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 - the kubelet probes it
    return runner
