"""Many deliveries through faulty sandboxes, retried the way the service does: none lost, none doubled.

The loop below follows the service's rules (``publisher.delivery``): a delivery that was attempted before
is looked up first; transient errors are retried; a lost answer is resolved by a look-up, never by a blind
second send. Weibo and Toutiao run with 30 % random 503s and a run of answers lost after the platform
committed the post.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from channels.base import AccountInfo, Channel, DeliveryContext, PostContent, PublishResult
from channels.errors import OutcomeUnknown, TransientError
from channels.sandbox.server import RunningServer
from channels.toutiao import Toutiao
from channels.weibo import Weibo
from tests.support.contract import NoWait, make_ctx

DELIVERIES = 60


def deliver(channel: Channel, ctx: DeliveryContext, max_attempts: int = 40) -> tuple[PublishResult, int]:
    """The service's attempt loop, condensed; returns the result and how many attempts it took."""
    attempted = False
    for attempt in range(1, max_attempts + 1):
        try:
            result = channel.lookup(ctx) if attempted else None
            attempted = True
            if result is None:
                result = channel.publish(ctx)
            return result, attempt
        except (TransientError, OutcomeUnknown):
            continue  # retried; the next attempt looks before it sends
    raise AssertionError(f"delivery {ctx.delivery_id} never settled")


def run(
    server: RunningServer,
    prefix: str,
    account: dict[str, Any],
    channel: Channel,
    make: Callable[[int], DeliveryContext],
    drop_path: str,
) -> tuple[list[PublishResult], int]:
    """Reset the sandbox, register ``account``, turn the faults on and deliver ``DELIVERIES`` posts."""
    control = httpx.Client(base_url=f"{server.url}{prefix}/_sandbox", timeout=10)
    control.post("/reset").raise_for_status()
    control.post("/accounts", json=account).raise_for_status()
    control.post("/faults", json={"error_rate": 0.3, "seed": 11}).raise_for_status()
    control.post("/faults", json={"path": drop_path, "drop_after_commit": True, "times": 8}).raise_for_status()
    try:
        outcomes = [deliver(channel, make(n)) for n in range(DELIVERIES)]
        injected = control.get("/faults").json()["injected"]
    finally:
        control.post("/faults", json={"clear": True})
        control.close()
    return [result for result, _ in outcomes], injected


def test_weibo_none_lost_none_doubled(sandbox_server: RunningServer) -> None:
    account = AccountInfo(
        id=90,
        kind="weibo",
        name="fan-out",
        credentials={"access_token": "busy-token", "uid": "7000000001"},
        config={"base_url": f"{sandbox_server.url}/weibo", "safe_domain": "127.0.0.1", "rip": "10.0.0.1"},
    )
    channel = Weibo(account, limiter=NoWait())

    def make(n: int) -> DeliveryContext:
        content = PostContent(title=f"第{n}号通知", body=f"通知正文 {n}。")
        return make_ctx(content, depends_on_url=f"{sandbox_server.url}/wp/demo/notice-{n}/")

    registered = {"uid": "7000000001", "access_token": "busy-token", "hourly_limit": 10_000}
    results, injected = run(sandbox_server, "/weibo", registered, channel, make, "/2/statuses/share.json")
    channel.close()
    state = httpx.get(f"{sandbox_server.url}/weibo/_sandbox/state").json()
    posted = [s for s in state["statuses"] if s["uid"] == "7000000001" and not s["deleted"]]
    per_delivery = Counter(s["sent_text"].rsplit("mm=", 1)[1] for s in posted)
    assert injected > 20  # the faults really happened
    assert len(results) == DELIVERIES and all(r.state == "published" for r in results)
    assert len(per_delivery) == DELIVERIES and set(per_delivery.values()) == {1}  # nothing lost, nothing twice
    assert {r.remote_id for r in results} == {s["idstr"] for s in posted}


def test_toutiao_none_lost_none_doubled(sandbox_server: RunningServer) -> None:
    account = AccountInfo(
        id=91,
        kind="toutiao",
        name="fan-out",
        credentials={"sessionid": "busy-session", "expires_at": "2099-01-01T00:00:00Z"},
        config={"base_url": f"{sandbox_server.url}/toutiao"},
    )
    channel = Toutiao(account, limiter=NoWait())

    def make(n: int) -> DeliveryContext:
        return make_ctx(PostContent(title=f"第{n}号工作简报文章", body=f"简报正文 {n}。"))

    registered = {"sessionid": "busy-session"}
    results, injected = run(sandbox_server, "/toutiao", registered, channel, make, "/mp/agw/article/publish")
    channel.close()
    articles = [
        a for a in httpx.get(f"{sandbox_server.url}/toutiao/_sandbox/state").json()["articles"] if not a["deleted"]
    ]
    per_title = Counter(a["title"] for a in articles)
    assert injected > 20
    assert len(results) == DELIVERIES and all(r.state == "awaiting_confirmation" for r in results)
    assert len(per_title) == DELIVERIES and set(per_title.values()) == {1}
    assert {r.remote_id for r in results} == {a["pgc_id"] for a in articles}
