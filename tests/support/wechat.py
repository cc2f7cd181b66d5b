"""Helpers of the WeChat tests: the sandbox's own server, its per-app knobs and state, an adapter factory.

The sandbox is mounted at ``/wechat`` in a small app of its own (next to a ``/files`` route that plays
an outside image host), so these tests do not depend on the other platforms' sandboxes. The fixtures
built on these (``wx_server``, ``wx``) are in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from channels.base import AccountInfo, make_client
from channels.sandbox import wechat as sandbox_wechat
from channels.sandbox.server import RunningServer, serve_in_thread
from channels.tokens import MemoryTokenCache, TokenCache
from channels.wechat import WeChatChannel, default_cover_png
from tests.support.contract import SandboxControl

APPID, SECRET = "wxtest00000000contract", "test-secret"
PNG = default_cover_png()
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 32


def _files(request: Request) -> Response:
    name = request.path_params["name"]
    if name.startswith("hop") and name != "hop0.png":
        # hop<n>.png redirects to hop<n-1>.png: an image n redirects away (a CDN chain)
        hops = int(name[3:].split(".")[0])
        return Response(status_code=302, headers={"Location": f"/files/hop{hops - 1}.png"})
    name = "pic.png" if name == "hop0.png" else name
    body = {"pic.png": PNG, "pic.jpg": JPEG, "anim.gif": GIF, "big.png": PNG + b"\x00" * 1_100_000}.get(name)
    if body is None:
        return Response(status_code=404)
    return Response(body, media_type="image/png" if name.endswith("png") else "application/octet-stream")


def start_server() -> RunningServer:
    """The WeChat sandbox at ``/wechat`` and the image host at ``/files``, on a real server (a free port)."""
    app = Starlette(routes=[Route("/files/{name}", _files), Mount("/wechat", app=sandbox_wechat.create_app())])
    return serve_in_thread(app)


def settings(sandbox: SandboxControl, **knobs: Any) -> dict[str, Any]:
    """Set the per-app knobs (publish_quota, minute_quota, settle_s, publish_outcome) of the test app."""
    response = sandbox.http.post("/settings", json={"appid": APPID, **knobs})
    response.raise_for_status()
    return response.json()


def app_state(sandbox: SandboxControl) -> dict[str, Any]:
    """The sandbox's state of the test app (calls, token calls, drafts, articles, quotas …)."""
    return sandbox.state()["apps"][APPID]


def make_account(root: str, **config: Any) -> AccountInfo:
    creds = {"appid": config.pop("appid", APPID), "secret": config.pop("secret", SECRET)}
    return AccountInfo(
        id=42,
        kind="wechat",
        name="test",
        credentials=creds,
        config={"base_url": f"{root}/wechat", "source_url": "https://www.example.org/", **config},
    )


class RecordingLimiter:
    """Records each throttle request instead of sleeping (the spacing itself is the base class's, tested there)."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def acquire(self, key: str, per_second: float, burst: int = 1) -> None:
        assert per_second == WeChatChannel.rate_per_second
        self.keys.append(key)


def factory(
    server: RunningServer, cache: TokenCache | None = None, **config: Any
) -> Callable[[httpx.BaseTransport | None], WeChatChannel]:
    """An adapter factory for :func:`tests.support.contract.run_case`: a fresh token cache unless one is given."""

    def make(transport: httpx.BaseTransport | None) -> WeChatChannel:
        account = make_account(server.url, **config)
        client = make_client(WeChatChannel.base_url(account), transport=transport) if transport else None
        return WeChatChannel(account, client, limiter=RecordingLimiter(), token_cache=cache or MemoryTokenCache())

    return make
