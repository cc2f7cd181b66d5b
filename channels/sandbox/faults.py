"""Knobs shared by every platform sandbox: injected faults, a fake clock and the ``/_sandbox/`` control API.

A sandbox wires them in with :func:`install_knobs`::

    faults, clock = Faults(render_error=my_platform_error), FakeClock()
    install_knobs(app, faults, clock, on_reset=state.clear)

Fault knobs (``POST <prefix>/_sandbox/faults``, JSON; keys may be combined):

``{"latency_ms": 200}``
    delay every request (alone, or with only the other global knobs; next to fault fields it is
    that fault's latency instead).
``{"error_rate": 0.1, "seed": 7}``
    answer that share of requests with a 503 (seeded, so a test run is repeatable).
``{"path": "posts", "method": "POST", "status": 503, "times": 2}``
    a scripted fault: the next ``times`` requests whose path contains ``path`` (and whose method is
    ``method``, if given) get it; ``times: -1`` keeps it until cleared. Other fields:
    ``retry_after`` (seconds, sent as ``Retry-After``), ``latency_ms`` (this request only),
    ``drop_after_commit`` (run the request, keep its effect, then break the connection so the client
    never gets the answer) and any platform-native error fields (``errcode`` for WeChat,
    ``error_code`` for Weibo, ``code`` for WordPress …), which the platform's ``render_error`` turns
    into its own error envelope.
``{"faults": [{…}, {…}]}``
    several scripted faults at once.
``{"clear": true}``
    drop every knob first.

Requests under ``/_sandbox/`` are never faulted, so a test can always reach the control API.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTROL_MARKER = "/_sandbox/"

# Fields of a scripted fault that the framework itself understands; anything else is platform-native.
_FAULT_FIELDS = {"path", "method", "times", "status", "retry_after", "drop_after_commit", "latency_ms"}
_KNOB_FIELDS = {"latency_ms", "error_rate", "seed", "faults", "clear"}


class SandboxError(Exception):
    """Root of the sandbox package's own errors (bad knob settings, a server that does not start)."""


@dataclass
class Fault:
    """One scripted fault. ``extra`` holds platform-native error fields (``errcode``, ``error_code`` …)."""

    path: str = ""
    method: str | None = None
    times: int = 1
    status: int | None = None
    retry_after: float | None = None
    drop_after_commit: bool = False
    latency_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from the control API's JSON; unknown keys go to ``extra``."""
        if not isinstance(data, dict):
            raise SandboxError(f"a fault must be a JSON object, not {type(data).__name__}")
        known = {k: v for k, v in data.items() if k in _FAULT_FIELDS}
        extra = {k: v for k, v in data.items() if k not in _FAULT_FIELDS and k != "extra"}
        extra.update(data.get("extra") or {})
        fault = cls(**known, extra=extra)
        if fault.method:
            fault.method = fault.method.upper()
        if not isinstance(fault.times, int) or fault.times == 0 or fault.times < -1:
            raise SandboxError("times must be a positive count, or -1 for 'until cleared'")
        if fault.status is not None and not (isinstance(fault.status, int) and 100 <= fault.status <= 599):
            raise SandboxError("status must be an HTTP status code")
        return fault

    def matches(self, method: str, path: str) -> bool:
        """True if this fault applies to a request."""
        return self.path in path and (self.method is None or self.method == method)

    @property
    def is_error(self) -> bool:
        """True if the fault replaces the answer with an error (rather than only delaying or dropping)."""
        return self.status is not None or bool(self.extra)


ErrorRenderer = Callable[[Fault], Response]


def default_render_error(fault: Fault) -> Response:
    """A neutral JSON error, for sandboxes without their own envelope."""
    status = fault.status or 500
    return JSONResponse({"error": f"injected fault {status}", **fault.extra}, status_code=status)


class Faults:
    """Thread-safe fault settings of one sandbox (the control API and the ASGI middleware share them)."""

    def __init__(self, render_error: ErrorRenderer = default_render_error) -> None:
        self.render_error = render_error
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Drop every knob."""
        with self._lock:
            self.latency_ms = 0
            self.error_rate = 0.0
            self._random = random.Random(0)  # noqa: S311 - reproducible fault injection, not a secret
            self.scripted: list[Fault] = []
            self.injected = 0  # how many requests got a fault, for assertions

    def configure(self, data: dict[str, Any]) -> dict[str, Any]:
        """Apply a control-API body (see the module docstring) and return the resulting settings."""
        if not isinstance(data, dict):
            raise SandboxError("fault settings must be a JSON object")
        if data.get("clear"):
            self.clear()
        new_faults = [Fault.from_dict(f) for f in data.get("faults") or []]
        shorthand = {k: v for k, v in data.items() if k not in _KNOB_FIELDS}
        global_latency = "latency_ms" in data
        if shorthand:
            # a bare fault object, e.g. {"path": "posts", "status": 503}; a latency_ms next to it
            # belongs to that fault ({"path": "/kill", "latency_ms": 2500} slows only those requests)
            if global_latency:
                shorthand["latency_ms"] = data["latency_ms"]
                global_latency = False
            new_faults.append(Fault.from_dict(shorthand))
        with self._lock:
            if global_latency:
                self.latency_ms = max(0, int(data["latency_ms"]))
            if "error_rate" in data:
                rate = float(data["error_rate"])
                if not 0.0 <= rate <= 1.0:
                    raise SandboxError("error_rate must be between 0 and 1")
                self.error_rate = rate
            if "seed" in data:
                self._random = random.Random(data["seed"])  # noqa: S311 - reproducible fault injection
            self.scripted.extend(new_faults)
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """The current settings as JSON."""
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "error_rate": self.error_rate,
                "scripted": [asdict(f) for f in self.scripted],
                "injected": self.injected,
            }

    def take(self, method: str, path: str) -> tuple[int, Fault | None]:
        """The global latency and the fault (if any) for one request; consumes one use of a scripted fault."""
        with self._lock:
            for fault in self.scripted:
                if fault.matches(method, path):
                    fault.fired += 1
                    if fault.times != -1:
                        fault.times -= 1
                        if fault.times == 0:
                            self.scripted.remove(fault)
                    self.injected += 1
                    return self.latency_ms, fault
            if self.error_rate and self._random.random() < self.error_rate:
                self.injected += 1
                return self.latency_ms, Fault(status=503)
            return self.latency_ms, None


class FaultMiddleware:
    """Pure ASGI middleware applying :class:`Faults` to every request outside ``/_sandbox/``."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or CONTROL_MARKER in scope["path"] + "/":
            await self.app(scope, receive, send)
            return
        latency_ms, fault = self.faults.take(scope["method"], scope["path"])
        delay = latency_ms + (fault.latency_ms if fault else 0)
        if delay:
            await asyncio.sleep(delay / 1000)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.drop_after_commit:
            await self.app(scope, receive, _dropping_send(send))
        elif fault.is_error:
            response = self.faults.render_error(fault)
            if fault.retry_after is not None and "retry-after" not in response.headers:
                response.headers["Retry-After"] = _retry_after_header(fault.retry_after)
            await response(scope, receive, send)
        else:  # latency only
            await self.app(scope, receive, send)


def _retry_after_header(seconds: float) -> str:
    # Retry-After takes whole seconds; round up so a client never retries early.
    return str(max(0, int(-(-seconds // 1))))


def _dropping_send(send: Send) -> Send:
    """Wrap ``send`` so the client gets headers promising more body than ever comes, then a closed socket.

    The operation has already been performed by the app; the client (httpx) sees a truncated body and
    raises ``RemoteProtocolError``: exactly a reply lost after the platform committed the change.
    uvicorn logs "ASGI callable returned without completing response" and closes the connection.
    """

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", b"1048576"))
            await send({**message, "headers": headers})
        # body messages are swallowed: nothing but the headers ever reaches the client

    return wrapped


class FakeClock:
    """Wall-clock time plus an offset that the control API advances (quotas, async states, engagement)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    def now(self) -> float:
        """Seconds since the epoch, on the sandbox's clock."""
        with self._lock:
            return time.time() + self._offset

    def utcnow(self) -> datetime:
        """The sandbox's current time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> float:
        """Move the clock forward (never backward) and return the new time."""
        if seconds < 0:
            raise SandboxError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()

    def reset(self) -> None:
        """Back to real time."""
        with self._lock:
            self._offset = 0.0


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise SandboxError(f"control API body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SandboxError("control API body must be a JSON object")
    return data


def knob_routes(faults: Faults, clock: FakeClock, on_reset: Callable[[], None] | None = None) -> list[Route]:
    """Control routes for faults, the clock and reset, all under ``/_sandbox/``.

    ``POST /_sandbox/reset`` clears the faults, resets the clock and calls ``on_reset`` (the platform's
    own state). Platform-specific ``accounts`` and ``state`` routes are added by each sandbox.
    """

    async def get_faults(request: Request) -> Response:
        return JSONResponse(faults.snapshot())

    async def post_faults(request: Request) -> Response:
        try:
            return JSONResponse(faults.configure(await _json_body(request)))
        except (SandboxError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def delete_faults(request: Request) -> Response:
        faults.clear()
        return JSONResponse(faults.snapshot())

    async def get_clock(request: Request) -> Response:
        return JSONResponse({"now": clock.now(), "iso": clock.utcnow().isoformat()})

    async def advance_clock(request: Request) -> Response:
        try:
            body = await _json_body(request)
            clock.advance(float(body.get("seconds", 0)))
        except (SandboxError, TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return await get_clock(request)

    async def reset(request: Request) -> Response:
        faults.clear()
        clock.reset()
        if on_reset is not None:
            on_reset()
        return JSONResponse({"reset": True})

    return [
        Route("/_sandbox/faults", get_faults, methods=["GET"]),
        Route("/_sandbox/faults", post_faults, methods=["POST"]),
        Route("/_sandbox/faults", delete_faults, methods=["DELETE"]),
        Route("/_sandbox/clock", get_clock, methods=["GET"]),
        Route("/_sandbox/clock/advance", advance_clock, methods=["POST"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
    ]


def install_knobs(app: Any, faults: Faults, clock: FakeClock, on_reset: Callable[[], None] | None = None) -> None:
    """Add the knob routes and the fault middleware to a Starlette or FastAPI app (before it serves)."""
    # First in the route list, so no platform route pattern (e.g. ``/{site}/``) can shadow them.
    app.router.routes[0:0] = knob_routes(faults, clock, on_reset)
    app.add_middleware(FaultMiddleware, faults=faults)
