"""Platform sandboxes: ASGI apps that speak each platform's real protocol, errors included.

:func:`create_app` mounts every registered sandbox under its prefix in one app. Run it on its own with
``python -m channels.sandbox [--host H] [--port P]`` (:mod:`channels.sandbox.__main__`); tests serve it
with :func:`channels.sandbox.server.serve_in_thread`. Each sandbox module exposes ``create_app()`` and
``DEMO_ACCOUNTS`` and has a JSON control API under ``<prefix>/_sandbox/`` (accounts, state, faults,
clock, reset). The combined app adds ``GET /_sandbox/demo-accounts``: every sandbox's demo accounts
with ``{sandbox}`` filled in with the URL the request came to, so the service can seed them over HTTP.

The sandboxes implement each platform's rules themselves and import nothing of the production
adapters (``channels.*`` outside this package): a fake that shared the adapter's code would agree
with the adapter's bugs.
"""

from __future__ import annotations

import html
import importlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

# kind -> (mount prefix, "module:factory"). Each channel helper adds its one line when its sandbox lands.
SANDBOXES: dict[str, tuple[str, str]] = {
    "wordpress": ("/wp", "channels.sandbox.wordpress:create_app"),
    "wechat": ("/wechat", "channels.sandbox.wechat:create_app"),
    "weibo": ("/weibo", "channels.sandbox.weibo:create_app"),
    "toutiao": ("/toutiao", "channels.sandbox.toutiao:create_app"),
    # the monitor's alert robots (WeCom, DingTalk, Feishu): loaded by name, so channels still imports no monitor
    "robots": ("/robots", "monitor.robot_sandbox:create_app"),
    # the monitor's RSSHub-shaped feeds (any path is a feed of a normal day, on a fake clock): the demo sources
    "feeds": ("/feeds", "monitor.sandbox:create_app"),
}


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def index(request: Request) -> Response:
    """``GET /``: a page linking every sandbox's state (and the demo accounts)."""
    base = _base_url(request)
    rows = "".join(
        f"<li><b>{html.escape(name)}</b>: <a href='{html.escape(base + prefix)}/_sandbox/state'>"
        f"{html.escape(base + prefix)}</a></li>"
        for name, (prefix, _target) in sorted(SANDBOXES.items())
    )
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>media-matrix sandboxes</title></head>"
        f"<body><h1>media-matrix platform sandboxes</h1><ul>{rows}</ul>"
        f"<p><a href='{html.escape(base)}/_sandbox/demo-accounts'>demo accounts</a> (JSON)</p></body></html>"
    )


async def demo_accounts_endpoint(request: Request) -> Response:
    """``GET /_sandbox/demo-accounts``: :func:`demo_accounts` for the URL this request came to."""
    return JSONResponse(demo_accounts(_base_url(request)))


def create_app() -> Starlette:
    """One ASGI app with every sandbox mounted under its prefix, an index page at ``/`` and the demo accounts."""
    mounts = [Mount(prefix, app=_load(target)()) for prefix, target in SANDBOXES.values()]
    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/_sandbox/demo-accounts", demo_accounts_endpoint, methods=["GET"]),
            *mounts,
        ]
    )


def demo_accounts(sandbox_url: str) -> list[dict[str, Any]]:
    """Every sandbox's ``DEMO_ACCOUNTS``, with ``{sandbox}`` in config values replaced by ``sandbox_url``."""
    accounts: list[dict[str, Any]] = []
    for _prefix, target in SANDBOXES.values():
        module = importlib.import_module(target.partition(":")[0])
        for account in getattr(module, "DEMO_ACCOUNTS", []):
            config = {
                k: v.replace("{sandbox}", sandbox_url.rstrip("/")) if isinstance(v, str) else v
                for k, v in account.get("config", {}).items()
            }
            accounts.append({**account, "credentials": dict(account["credentials"]), "config": config})
    return accounts
