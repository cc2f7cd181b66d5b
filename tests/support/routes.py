"""Every route of an app, those of included routers too (FastAPI 0.165 keeps an included router as one entry)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def all_routes(app: Any) -> Iterator[Any]:
    """The app's routes, flattening included routers (their ``original_router``)."""
    stack = list(app.routes)
    while stack:
        route = stack.pop(0)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            stack[:0] = list(inner.routes)
            continue
        yield route
