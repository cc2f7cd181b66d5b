"""Request-body caps for the HTTP API, enforced before the application reads the body.

FastAPI reads a JSON body whole before it validates it, so a 15 MB body was read (and parsed) before anything
said no. :class:`BodyLimit` is a pure ASGI middleware in front of it: a ``Content-Length`` over the route's
cap is answered 413 without reading a byte; a body without one (chunked) is counted as it streams in and the
request is answered 413 as soon as it passes the cap. Every refusal is one line, ``{"detail": "..."}``, like
every other user error of the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(Exception):
    """Raised to the application by ``receive`` once a streamed body has passed its cap."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"request body is larger than {cap} bytes")
        self.cap = cap

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return type(self), (self.cap,)


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            # The rest of an oversize body is not wanted: the server closes the connection instead of reading it.
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _too_large(cap: int) -> str:
    return f"request body is too large: at most {cap} bytes here"


def _declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (the largest, if it is sent twice); None without one.

    Raises ValueError if it is not a number.
    """
    values = [value for name, value in scope.get("headers", ()) if name == b"content-length"]
    if not values:
        return None
    lengths = []
    for value in values:
        text = value.decode("latin-1").strip()
        if not text.isdigit():
            raise ValueError(text)
        lengths.append(int(text))
    return max(lengths)


class BodyLimit:
    """Refuse a request body over its route's cap (413) before the application reads it.

    ``cap_for(scope)`` gives the cap in bytes of the request at hand (the API looks it up by route). The
    application sees an oversize streamed body as :class:`BodyTooLarge` raised by ``receive``; whatever it
    answers then is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, cap_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.cap_for = cap_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope)
        try:
            declared = _declared_length(scope)
        except ValueError:
            await _answer(send, 400, "invalid Content-Length header")
            return
        if declared is not None and declared > cap:
            await _answer(send, 413, _too_large(cap))
            return

        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge(cap)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    exceeded = True
                    raise BodyTooLarge(cap)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the application's answer to a body it could not read: the 413 below replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if started:  # too late to answer; the server logs the broken response
                raise
        if exceeded and not started:
            await _answer(send, 413, _too_large(cap))
