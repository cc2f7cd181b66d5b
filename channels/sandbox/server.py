"""Run an ASGI app with a real uvicorn server in a background thread (tests, benchmarks, ``matrix up``).

Tests talk to the sandboxes over real sockets, so the adapters' real ``httpx.Client`` and the whole
transport stack (timeouts, dropped connections, Content-Length mismatches) are exercised, not an
in-process shortcut.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from channels.sandbox.faults import SandboxError

log = logging.getLogger(__name__)


class ServerStartError(SandboxError):
    """The server thread did not start listening in time (port taken, app failed at startup, …)."""


@dataclass
class RunningServer:
    """A uvicorn server running in a daemon thread; ``url`` has no trailing slash."""

    url: str
    host: str
    port: int
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to exit and wait for its thread (idempotent)."""
        self._server.should_exit = True
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the server thread runs."""
        return self._thread.is_alive()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    startup_timeout: float = 15.0,
) -> RunningServer:
    """Start ``app`` on ``host:port`` (``port=0``: a free port chosen by the OS) and return once it listens.

    uvicorn installs no signal handlers outside the main thread, so Ctrl-C stays with the caller, who
    must call :meth:`RunningServer.stop`.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="off",
        # Only the h11 implementation is guaranteed present; it also reports truncated bodies plainly.
        http="h11",
        ws="none",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=_run, args=(server,), name=f"uvicorn:{host}:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ServerStartError(f"server on {host}:{port} did not start")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    return RunningServer(url=f"http://{host}:{bound_port}", host=host, port=bound_port, _server=server, _thread=thread)


def _run(server: uvicorn.Server) -> None:
    try:
        server.run()
    except SystemExit:  # uvicorn exits the process on startup failure; keep it to this thread
        log.error("sandbox server failed to start")
