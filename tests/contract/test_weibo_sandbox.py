"""The Weibo sandbox's behaviour and the adapter's rendering rules (length, link, topics)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from channels.base import AccountInfo, DeliveryContext, PostContent
from channels.errors import NeedsReauth, RateLimited
from channels.sandbox import weibo_rules
from channels.sandbox.server import RunningServer, serve_in_thread
from channels.sandbox.weibo import create_app
from channels.weibo import Weibo, on_safe_domain, weibo_length, with_marker
from tests.support.contract import NoWait, make_ctx


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = serve_in_thread(create_app())
    yield running
    running.stop()


@pytest.fixture
def sandbox(server: RunningServer) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=server.url, timeout=10.0)
    client.post("/_sandbox/reset").raise_for_status()
    yield client
    client.close()


def register(sandbox: httpx.Client, **account: Any) -> dict[str, Any]:
    response = sandbox.post("/_sandbox/accounts", json=account)
    response.raise_for_status()
    return response.json()


def channel(server: RunningServer, token: str = "demo-weibo-token-1", uid: str = "5000000001") -> Weibo:
    account = AccountInfo(
        id=7,
        kind="weibo",
        name="测试微博",
        credentials={"access_token": token, "uid": uid},
        config={"base_url": server.url, "safe_domain": "127.0.0.1", "rip": "10.1.2.3"},
    )
    return Weibo(account, limiter=NoWait())


def delivery(server: RunningServer, n: int = 0, **kwargs: Any) -> DeliveryContext:
    content = PostContent(title=f"第{n}条通知", body=f"正文内容 {n}。")
    return make_ctx(content, depends_on_url=f"{server.url}/site/2026/notice-{n}/", **kwargs)


# ------------------------------------------------------------------------------------------ counting


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("Test", 2),  # ASCII counts half
        ("我司CEO与我司吉祥物...好大一坨！", 16),  # WeCase's doctest of Sina's counter
        ("😀", 2),  # outside the BMP: two
        ("看 http://example.com/a", 12),  # a link costs 10 whatever its length
        ("看 https://www.example.gov.cn/2026/11/23/a-very-long-article-slug/?mm=mm-123456", 12),
        ("http://e.cn/" + "a" * 200, 10 + 36),  # beyond 140 half-width units the excess counts too
    ],
)
@pytest.mark.parametrize(
    "count",
    [weibo_length, weibo_rules.status_length],
    ids=["adapter", "sandbox"],  # written apart on purpose: the sandbox must not share the adapter's bugs
)
def test_weibo_length(count: Any, text: str, length: int) -> None:
    assert count(text) == length


@pytest.mark.parametrize("safe", [on_safe_domain, weibo_rules.on_safe_domain], ids=["adapter", "sandbox"])
def test_marker_and_safe_domain(safe: Any) -> None:
    url = with_marker("https://www.example.gov.cn/a/?page=2&mm=old", "mm-9")
    assert url == "https://www.example.gov.cn/a/?page=2&mm=mm-9"
    assert safe(url, "example.gov.cn") and safe(url, "https://www.example.gov.cn")
    assert safe("http://EXAMPLE.gov.cn./x", "example.gov.cn")  # host names are case-insensitive
    assert not safe(url, "gov.cn.evil.com")
    assert not safe("https://badexample.gov.cn/", "example.gov.cn")
    assert not safe("https://example.gov.cn.evil.com/", "example.gov.cn")


def test_sandbox_finds_links_as_weibo_does() -> None:
    """A link ends at the first character a URL cannot hold, so Chinese may follow it without a space."""
    assert weibo_rules.links("见http://e.cn/a?b=1#c，详情https://x.cn/中文") == ["http://e.cn/a?b=1#c", "https://x.cn/"]
    assert weibo_rules.status_length("看http://e.cn/a中文") == 13  # 看 + link + 中文: 2 + 20 + 4 units
    assert weibo_rules.has_topic("#话题# 正文") and not weibo_rules.has_topic("见 http://e.cn/#a#b")


def test_render_fits_and_keeps_the_link(server: RunningServer) -> None:
    ch = channel(server)
    long = PostContent(title="#话题# 关于" + "安全" * 50, body="第一段" * 200)
    link = with_marker("https://www.example.gov.cn/news/1.html", "mm-5")
    text = ch.render(long, link=link).text
    assert weibo_length(text) == 140 and text.endswith(" " + link) and "#" not in text and "…" in text
    short = ch.render(PostContent(title="短", body="一句话。"), link=link).text
    assert short == f"【短】一句话。 {link}"
    ch.close()


# ------------------------------------------------------------------------------------------ sandbox


def test_hourly_limit_on_the_fake_clock(server: RunningServer, sandbox: httpx.Client) -> None:
    """30 posts an hour pass, the 31st is refused (10024), and passes once the hour has gone by."""
    assert Weibo.posts_per_hour == 30  # what the service enforces first, across workers
    ch = channel(server)
    for n in range(30):
        ch.publish(delivery(server, n))
    with pytest.raises(RateLimited) as refused:
        ch.publish(delivery(server, 30))
    assert refused.value.code == 10024
    sandbox.post("/_sandbox/clock/advance", json={"seconds": 3601}).raise_for_status()
    assert ch.publish(delivery(server, 30)).state == "published"
    ch.close()


def test_repeat_content_in_weibos_envelope(server: RunningServer, sandbox: httpx.Client) -> None:
    form = {"access_token": "demo-weibo-token-1", "status": f"同一句话 {server.url}/x", "rip": "10.0.0.1"}
    assert sandbox.post("/2/statuses/share.json", data=form).status_code == 200
    again = sandbox.post("/2/statuses/share.json", data=form)
    assert again.status_code == 400
    assert again.json() == {"request": "/2/statuses/share.json", "error_code": 20019, "error": "Repeat conetnt"}
    sandbox.post("/_sandbox/clock/advance", json={"seconds": 86_401}).raise_for_status()
    assert sandbox.post("/2/statuses/share.json", data=form).status_code == 200  # a day later it is allowed


def test_token_expiry_mid_run_needs_reauth_everywhere(server: RunningServer, sandbox: httpx.Client) -> None:
    register(sandbox, uid="5000000201", access_token="expiring", expires_in=3600)
    ch = channel(server, "expiring", "5000000201")
    done = delivery(server, 1)
    done.remote_id = ch.publish(done).remote_id
    sandbox.post("/_sandbox/clock/advance", json={"seconds": 3600}).raise_for_status()
    for operation in (
        lambda: ch.publish(delivery(server, 2)),
        lambda: ch.metrics([done]),
        lambda: ch.lookup(delivery(server, 3)),
        lambda: ch.retract(done),
        ch.check_credentials,
    ):
        with pytest.raises(NeedsReauth) as dead:
            operation()
        assert dead.value.code == 21327
    ch.close()


def test_counts_grow_with_the_clock(server: RunningServer, sandbox: httpx.Client) -> None:
    ch = channel(server)
    ctx = delivery(server)
    ctx.remote_id = ch.publish(ctx).remote_id
    seen = []
    for _ in range(3):
        seen.append(ch.metrics([ctx])[ctx.delivery_id])
        sandbox.post("/_sandbox/clock/advance", json={"seconds": 1800}).raise_for_status()
    assert seen[0].comments == seen[0].shares == seen[0].likes == 0
    for earlier, later in itertools.pairwise(seen):
        assert later.likes >= earlier.likes and later.comments >= earlier.comments and later.shares >= earlier.shares
    assert seen[-1].likes > 0 and all(m.reads is None for m in seen)
    ch.close()


def test_metrics_in_batches_of_100(server: RunningServer, sandbox: httpx.Client) -> None:
    register(sandbox, uid="5000000202", access_token="prolific", hourly_limit=1000)
    ids = []
    for n in range(150):
        form = {"access_token": "prolific", "status": f"第{n}条 {server.url}/p/{n}", "rip": "10.0.0.1"}
        ids.append(sandbox.post("/2/statuses/share.json", data=form).json()["idstr"])
    ctxs = [make_ctx(remote_id=status_id) for status_id in ids]
    before = sandbox.get("/_sandbox/state").json()["calls"].get("count", 0)
    ch = channel(server, "prolific", "5000000202")
    metrics = ch.metrics(ctxs)
    ch.close()
    assert sandbox.get("/_sandbox/state").json()["calls"]["count"] - before == 2
    assert set(metrics) == {c.delivery_id for c in ctxs}


def test_pages_and_timeline(server: RunningServer, sandbox: httpx.Client) -> None:
    ch = channel(server)
    first, second = delivery(server, 1), delivery(server, 2)
    for ctx in (first, second):
        result = ch.publish(ctx)
        ctx.remote_id, ctx.remote_url = result.remote_id, result.url
    page = httpx.get(first.remote_url)
    assert page.status_code == 200 and "第1条通知" in page.text and f"{server.url}/site/2026/notice-1/" in page.text
    timeline = sandbox.get(
        "/2/statuses/user_timeline.json", params={"access_token": "demo-weibo-token-1", "count": 1}
    ).json()
    assert timeline["total_number"] == 2 and timeline["statuses"][0]["idstr"] == second.remote_id
    assert timeline["statuses"][0]["text"].count("http://t.cn/") == 1
    ch.retract(first)
    gone = httpx.get(first.remote_url)
    assert gone.status_code == 404 and "删除" in gone.text
    ch.close()
