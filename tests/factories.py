"""Shared builders for the tests: the objects many test modules build again and again.

Import them as ``from tests.factories import ...``. A builder takes the few fields a test cares
about as keyword arguments and fills the rest with plain, valid defaults.
"""

from __future__ import annotations

import socketserver
import threading


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """Serve in a daemon thread that checks for ``shutdown()`` every 50 ms (the default 0.5 s
    makes every test's teardown wait that long)."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return thread
