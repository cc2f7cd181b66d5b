"""The one outbound client (issue 10 item 1): every fetch a user's input can steer reaches only public addresses
or the allow-list — resolved first, every address checked, the checked address connected to (no DNS rebinding),
each redirect hop checked again, size and time capped, images checked by their bytes — and its errors say what
was refused, never what the inside answered. Each SSRF form the security review found is reproduced here.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from channels.base import AccountInfo, PostContent, make_client
from channels.errors import ChannelError, InvalidRequest
from channels.manual import build_package
from channels.sandbox.server import RunningServer, serve_in_thread
from channels.toutiao import Toutiao
from channels.website import WebsiteChannel
from core.errors import InvalidInput
from core.http import AddressPolicy, GuardedBackend, OutboundRefused, fetch, guarded_client, non_public_reason
from core.settings import reset_settings
from publisher.services.channels import check_credentials, make_channel

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
SECRET_PAGE = "internal-only: redis password is hunter2"

# ------------------------------------------------------------------------------------------ policy


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),  # AWS, GCP, Azure metadata
        ("fe80::1", "link-local"),
        ("100.100.100.200", "metadata"),  # Alibaba Cloud metadata: a "global" address otherwise
        ("fd00:ec2::254", "metadata"),  # AWS metadata over IPv6
        ("100.64.0.1", "not a globally routed"),  # carrier-grade NAT
        ("0.0.0.0", "unspecified"),  # noqa: S104 — an address refused, not one bound
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("8.8.8.8", ""),
        ("2606:4700:4700::1111", ""),
        ("::ffff:8.8.8.8", ""),
    ],
)
def test_address_table(address: str, reason: str) -> None:
    found = non_public_reason(ipaddress.ip_address(address))
    assert (reason in found) if reason else found == ""
    if reason:
        with pytest.raises(OutboundRefused, match=f"refused: {address} is"):
            AddressPolicy().check_address(address)


def test_allow_list_entries_are_hosts_ports_or_networks() -> None:
    policy = AddressPolicy.parse(["127.0.0.1:8100", "sandbox.local", "[::1]:9000", "10.1.0.0/16", " "])
    assert policy.host_allowed("127.0.0.1", 8100) and not policy.host_allowed("127.0.0.1", 8000)
    assert policy.host_allowed("SANDBOX.local", 1) and policy.host_allowed("::1", 9000)
    policy.check_address("10.1.200.3")  # allowed network
    with pytest.raises(OutboundRefused):
        policy.check_address("10.2.0.1")
    with pytest.raises(InvalidInput, match="not host, host:port or a network"):
        AddressPolicy.parse(["host:port"])


def test_default_allows_the_sandbox_on_the_embedded_demo_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.http import default_policy

    monkeypatch.setenv("MATRIX_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MATRIX_OUTBOUND_ALLOW")
    for name in ("MATRIX_DATABASE_URL", "MATRIX_BROKER_URL", "MATRIX_SANDBOX_HOST", "MATRIX_SANDBOX_PORT"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    try:
        assert default_policy().host_allowed("127.0.0.1", 8100)
        assert not default_policy().host_allowed("127.0.0.1", 8000)
        monkeypatch.setenv("MATRIX_OUTBOUND_ALLOW", "none")
        reset_settings()
        assert not default_policy().host_allowed("127.0.0.1", 8100)
        monkeypatch.delenv("MATRIX_OUTBOUND_ALLOW")
        monkeypatch.setenv("MATRIX_DATABASE_URL", "postgresql+psycopg://db.internal/matrix")
        reset_settings()
        assert not default_policy().host_allowed("127.0.0.1", 8100)  # production: nothing inside
    finally:
        reset_settings()


# ------------------------------------------------------------------------------- resolve, then connect


class Recording(httpcore.NetworkBackend):
    """A network backend that records where it is asked to connect and connects nowhere."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []

    def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        self.connects.append((host, port))
        raise httpcore.ConnectError("recorded")


def test_dns_rebinding_connects_to_the_address_that_was_checked() -> None:
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])  # public at the check, loopback a moment later
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    inner = Recording()
    backend = GuardedBackend(AddressPolicy(), resolver=resolver, inner=inner)
    with pytest.raises(httpcore.ConnectError):
        backend.connect_tcp("rebind.example", 80)
    assert calls == ["rebind.example"]  # resolved once …
    assert inner.connects == [("93.184.216.34", 80)]  # … and the checked address is the one connected to


def test_a_name_with_any_private_address_is_refused() -> None:
    inner = Recording()
    backend = GuardedBackend(AddressPolicy(), resolver=lambda host, port: ["93.184.216.34", "10.0.0.5"], inner=inner)
    with pytest.raises(OutboundRefused, match=r"refused: mixed.example \(10.0.0.5\) is a private address"):
        backend.connect_tcp("mixed.example", 443)
    assert inner.connects == []


def test_a_refused_url_is_named_without_its_query_or_credentials() -> None:
    with guarded_client(policy=AddressPolicy()) as client:
        with pytest.raises(OutboundRefused) as caught:
            client.get("http://user:pw@127.0.0.1:6379/x?access_token=SECRET")
    message = str(caught.value)
    assert "127.0.0.1 is a loopback address" in message and "http://127.0.0.1:6379/x" in message
    assert "SECRET" not in message and "pw" not in message


def test_other_schemes_are_refused() -> None:
    with guarded_client(policy=AddressPolicy()) as client:
        for url in ("file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO"):
            with pytest.raises((OutboundRefused, httpx.UnsupportedProtocol)):
                client.get(url)


# ---------------------------------------------------------------------------- a server to be fetched


async def _trickle() -> Any:
    for _ in range(40):
        yield b"x" * 10
        await asyncio.sleep(0.1)


async def _endless() -> Any:
    for _ in range(400):  # 26 MB, with no Content-Length
        yield b"y" * 65536
        await asyncio.sleep(0)


def _origin_app(api_port: list[int]) -> Starlette:
    async def image(request: Any) -> Response:
        return Response(PNG, media_type="image/png")

    async def state(request: Any) -> Response:
        return JSONResponse({"secret": SECRET_PAGE})

    async def page(request: Any) -> Response:
        return Response(f"<html><body>{SECRET_PAGE}</body></html>", status_code=502, media_type="text/html")

    async def to_inside(request: Any) -> Response:
        # a redirect to another service on this machine (the API's port, on another loopback address)
        return RedirectResponse(f"http://127.0.0.2:{api_port[0]}/accounts", status_code=302)

    async def hop(request: Any) -> Response:
        n = int(request.path_params["n"])
        return RedirectResponse(f"/hop/{n - 1}" if n > 0 else "/image.png", status_code=302)

    async def big(request: Any) -> Response:
        return Response(b"\x89PNG\r\n\x1a\n" + b"z" * 3_000_000, media_type="image/png")

    async def endless(request: Any) -> Response:
        return StreamingResponse(_endless(), media_type="image/png")

    async def trickle(request: Any) -> Response:
        return StreamingResponse(_trickle(), media_type="image/png")

    return Starlette(
        routes=[
            Route("/image.png", image),
            Route("/state", state),
            Route("/page", page),
            Route("/wp/{rest:path}", page),
            Route("/to-inside.png", to_inside),
            Route("/hop/{n}", hop),
            Route("/big.png", big),
            Route("/endless.png", endless),
            Route("/trickle.png", trickle),
        ]
    )


@pytest.fixture(scope="module")
def origin() -> Iterator[RunningServer]:
    api_port = [1]
    server = serve_in_thread(_origin_app(api_port))
    api_port[0] = server.port + 1
    yield server
    server.stop()


def _allow(server: RunningServer) -> AddressPolicy:
    """The allow-list an installation gives its sandboxes: this one server, nothing else on loopback."""
    return AddressPolicy.parse([f"{server.host}:{server.port}"])


def _url(server: RunningServer, path: str) -> str:
    return f"http://{server.host}:{server.port}{path}"


def test_loopback_is_refused_unless_allowed(origin: RunningServer) -> None:
    with guarded_client(policy=AddressPolicy()) as client:
        with pytest.raises(OutboundRefused, match="loopback"):
            client.get(_url(origin, "/image.png"))
    with guarded_client(policy=_allow(origin)) as client:
        assert client.get(_url(origin, "/image.png")).content == PNG


def test_each_redirect_hop_is_checked_again(origin: RunningServer) -> None:
    with guarded_client(policy=_allow(origin)) as client:
        with pytest.raises(OutboundRefused, match=r"127\.0\.0\.2 is a loopback address"):
            fetch(client, _url(origin, "/to-inside.png"), max_bytes=10_000)
        assert fetch(client, _url(origin, "/hop/2"), max_bytes=10_000).content == PNG
        with pytest.raises(OutboundRefused, match="redirects more than 3 times"):
            fetch(client, _url(origin, "/hop/5"), max_bytes=10_000)


def test_size_is_capped_declared_or_streamed(origin: RunningServer) -> None:
    with guarded_client(policy=_allow(origin)) as client:
        with pytest.raises(OutboundRefused, match="3,000,008 bytes, over 1,000,000"):
            fetch(client, _url(origin, "/big.png"), max_bytes=1_000_000)
        with pytest.raises(OutboundRefused, match="over 1,000,000 bytes"):
            fetch(client, _url(origin, "/endless.png"), max_bytes=1_000_000)


def test_a_trickling_server_is_cut_off(origin: RunningServer) -> None:
    with guarded_client(policy=_allow(origin)) as client:
        with pytest.raises(OutboundRefused, match=r"took over 0\.5 s"):
            fetch(client, _url(origin, "/trickle.png"), max_bytes=1_000_000, deadline_s=0.5)


# ------------------------------------------------------------------- the SSRF forms the review found


def _website(server: RunningServer, policy: AddressPolicy | None) -> WebsiteChannel:
    account = AccountInfo(
        id=1, kind="website", name="site", credentials={"username": "u", "app_password": "p"},
        config={"base_url": _url(server, "/wp")},
    )  # fmt: skip
    return WebsiteChannel(account, policy=policy)


def test_package_cover_at_an_internal_json_is_not_packaged(origin: RunningServer, monkeypatch: Any) -> None:
    """The review's first form: a cover at the sandbox's state put that state in ``cover.img``. The address is
    on the allow-list (it is the sandbox), so the guard lets it through — and the bytes are not an image."""
    monkeypatch.setenv("MATRIX_OUTBOUND_ALLOW", f"{origin.host}:{origin.port}")
    reset_settings()
    try:
        content = PostContent(title="t", body="正文", cover_url=_url(origin, "/state"))
        channel = make_channel(AccountInfo(id=1, kind="manual", name="m", credentials={}, config={}))
        data = build_package(content, channel.render(content), delivery_id=1)
        channel.close()
    finally:
        reset_settings()
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert not any(n.startswith("cover") for n in archive.namelist())
    assert "not a JPEG, PNG, GIF, WebP or BMP image" in archive.read("README.txt").decode()
    assert all(SECRET_PAGE.encode() not in archive.read(n) for n in archive.namelist())


def test_package_body_image_redirected_inside_is_refused(origin: RunningServer, monkeypatch: Any) -> None:
    """The second form: a body image reached the API's ``/accounts`` through a redirect."""
    monkeypatch.setenv("MATRIX_OUTBOUND_ALLOW", f"{origin.host}:{origin.port}")
    reset_settings()
    try:
        body = f"![a]({_url(origin, '/to-inside.png')})\n\n![b]({_url(origin, '/image.png')})"
        content = PostContent(title="t", body=body)
        channel = make_channel(AccountInfo(id=1, kind="manual", name="m", credentials={}, config={}))
        archive = zipfile.ZipFile(io.BytesIO(build_package(content, channel.render(content), delivery_id=1)))
        channel.close()
    finally:
        reset_settings()
    readme = archive.read("README.txt").decode()
    assert "image 1:" in readme and "127.0.0.2 is a loopback address" in readme
    assert archive.read("images/02.png") == PNG


@pytest.mark.parametrize("kind", ["website", "wechat", "toutiao"])
def test_worker_downloads_of_loopback_images_are_refused(kind: str, origin: RunningServer) -> None:
    """The third form: workers fetched loopback URLs for WeChat (through redirects), Toutiao and website covers."""
    account = AccountInfo(id=1, kind=kind, name="a", credentials={}, config={"base_url": "https://api.example.cn"})
    channel = make_channel(account)
    channel.policy = AddressPolicy()  # what production has: nothing inside is allowed
    channel.client = make_client(channel.base_url(account), policy=channel.policy)
    try:
        with pytest.raises(InvalidRequest, match="loopback address") as caught:
            if kind == "wechat":
                channel._upload_cover(_url(origin, "/hop/2"))  # redirects, then an image
            elif kind == "toutiao":
                assert isinstance(channel, Toutiao)
                channel._fetch_image(_url(origin, "/image.png"))
            else:
                channel._fetch_cover(_url(origin, "/image.png"))
        assert caught.value.__class__ is InvalidRequest  # permanent: never retried
    finally:
        channel.close()


def test_a_url_that_is_not_an_image_is_refused_by_its_bytes(origin: RunningServer) -> None:
    channel = _website(origin, _allow(origin))
    try:
        with pytest.raises(InvalidRequest, match="is not an image") as caught:
            channel._fetch_cover(_url(origin, "/state"))
        assert SECRET_PAGE not in str(caught.value)
        assert channel._fetch_cover(_url(origin, "/image.png"))[1] == "image/png"
    finally:
        channel.close()


def test_adding_an_account_with_a_loopback_base_url_is_refused(env: Path, monkeypatch: Any) -> None:
    """The fourth form: ``POST /accounts`` with a loopback ``base_url`` let a caller probe ports."""
    monkeypatch.setenv("MATRIX_OUTBOUND_ALLOW", "none")
    reset_settings()
    for port in (5432, 6379, 8000):
        with pytest.raises(InvalidInput, match=f"refused: 127.0.0.1 is a loopback address.*127.0.0.1:{port}"):
            check_credentials("website", "probe", {"username": "u", "app_password": "p"},
                              {"base_url": f"http://127.0.0.1:{port}"})  # fmt: skip


def test_an_error_page_is_described_not_quoted(origin: RunningServer) -> None:
    """The fifth: the error detail showed 200 characters of the internal answer."""
    channel = _website(origin, _allow(origin))
    try:
        with pytest.raises(ChannelError) as caught:  # whichever kind: the words are what counts
            channel.check_credentials()
        assert "text/html" in str(caught.value) and SECRET_PAGE not in str(caught.value)
    finally:
        channel.close()


def test_a_cover_url_is_fetched_and_checked_when_the_post_is_written(
    env: Path, origin: RunningServer, monkeypatch: Any
) -> None:
    """Issue 9's editor dead end: a wrong cover used to be found only at delivery."""
    from core.db import session_scope
    from publisher import services

    monkeypatch.setenv("MATRIX_OUTBOUND_ALLOW", f"{origin.host}:{origin.port}")
    reset_settings()
    with session_scope() as s:
        account = services.add_account(s, services.SYSTEM, kind="manual", name="m", credentials={}, organization="o")
        account_id = account.id

    def create(cover: str) -> int:
        with session_scope() as s:
            return services.create_post(
                s, services.SYSTEM, title="t", body="正文", accounts=[account_id], cover_url=cover, submit=False
            ).id

    with pytest.raises(InvalidInput, match="is not a JPEG, PNG, GIF, WebP or BMP image"):
        create(_url(origin, "/state"))
    with pytest.raises(InvalidInput, match="answered HTTP 502"):
        create(_url(origin, "/page"))
    with pytest.raises(InvalidInput, match=r"127\.0\.0\.2 is a loopback address"):
        create(_url(origin, "/to-inside.png"))
    with pytest.raises(InvalidInput, match="http"):
        create("ftp://example.org/a.png")
    post_id = create(_url(origin, "/image.png"))
    with session_scope() as s, pytest.raises(InvalidInput, match="not a JPEG"):
        services.edit_post(s, services.SYSTEM, post_id, cover_url=_url(origin, "/state"))


def test_the_shared_pool_is_guarded_and_sharded_by_thread(origin: RunningServer) -> None:
    import threading

    from core import http

    with guarded_client(policy=AddressPolicy(), shared=True) as client:
        with pytest.raises(OutboundRefused, match="loopback"):  # every shard connects through the guard
            client.get(_url(origin, "/image.png"))
    policy = _allow(origin)
    http._shared_pools.pop((os.getpid(), policy), None)  # a fresh pool: its shards' counts start at 0
    used: list[int] = []

    def two_calls() -> None:
        for _ in range(2):
            with guarded_client(policy=policy, shared=True) as client:
                assert client.get(_url(origin, "/image.png")).content == PNG
        pool = http._shared_pools[(os.getpid(), policy)]
        used.append(pool._shards.index(pool._mine.shard))

    threads = [threading.Thread(target=two_calls) for _ in range(http.SHARDS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(used) == list(range(http.SHARDS))  # each thread kept one shard, the threads took them in turn
    pool = http._shared_pools[(os.getpid(), policy)]
    # a thread's second call reused its shard's kept-alive connection: one connection a shard
    assert [len(s._pool.connections) for s in pool._shards] == [1] * http.SHARDS
