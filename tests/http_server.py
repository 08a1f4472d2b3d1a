"""Serve an ASGI app with real uvicorn on a loopback address, in a thread, on a free port.

The listening socket is bound before uvicorn starts (port 0: the kernel picks a free one), so
there is no race for the port. ``proxy_headers=False`` as in ``billing-api serve``: the app
sees the real TCP peer. ``log_config=None`` lets uvicorn's log records reach the root logger,
where the suite's log capture (tests/log_capture.py) checks them for secrets.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from billing_api.app import close_loop_resources


def _bind(host: str, *, dual_stack: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        # Dual stack: an IPv4 client then shows up as ::ffff:127.0.0.1.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
    sock.bind((host, 0))
    sock.listen(64)
    return sock


def ipv6_loopback_available() -> bool:
    try:
        _bind("::1").close()
    except OSError:
        return False
    return True


@contextmanager
def serve(app: Any, host: str = "127.0.0.1", *, dual_stack: bool = False) -> Iterator[str]:
    """Yield the base URL of ``app`` served on ``host``; stop the server afterwards."""
    sock = _bind(host, dual_stack=dual_stack)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, proxy_headers=False, log_config=None, log_level="info",
                            lifespan="off", access_log=True)
    server = uvicorn.Server(config)

    def run() -> None:
        # Lifespan is off: what the app opened on this loop is closed here, on it.
        async def serve_then_close() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                if hasattr(getattr(app, "state", None), "primary_reads"):
                    await close_loop_resources(app)

        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(serve_then_close())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    url_host = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{url_host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        # Refusals counted but not yet written belong to this test, not to the next one.
        refusals = getattr(getattr(app, "state", None), "refusal_audit", None)
        if refusals is not None:
            refusals.close()
        # The app's own engine holds pooled connections: close them, or psycopg warns
        # (and filterwarnings=error fails the test) when they are garbage-collected.
        for name in ("engine", "read_engine"):  # the same engine twice without a replica
            engine = getattr(getattr(app, "state", None), name, None)
            if engine is not None:
                engine.dispose()
