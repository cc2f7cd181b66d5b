"""Weibo and Toutiao end to end: a real Celery worker and beat, the sandboxes on a socket (embedded backend).

(The 30-posts-an-hour limit is the service's, shared by all workers; the sandbox refuses the 31st with
10024, see ``tests/contract/test_weibo_sandbox.py``. Driving 31 posts through real workers here took over three
minutes on the 2-core CI machine, so that end-to-end check is left to the service's own tests.)

- a Weibo delivery waits for the website copy of its post and links to its URL;
- an expired Weibo token stops the delivery at needs_reauth, without retries;
- a Toutiao article goes through review on the sandbox clock and is settled by reconcile;
- an assisted (manual) Toutiao delivery: awaiting_manual, the package, the operator's URL, published.
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from typing import Any

import pytest

from tests.support.stack import UNION, Stack

pytestmark = pytest.mark.timeout(300)  # `stack`: the embedded backend (tests/scenarios/conftest.py)


def add_account(kind: str, name: str, credentials: dict[str, Any], config: dict[str, Any]) -> int:
    from core.db import session_scope
    from publisher import services

    with session_scope() as s:
        account = services.add_account(
            s, services.SYSTEM, kind=kind, name=name, credentials=credentials, config=config, organization=UNION
        )
        s.flush()
        return account.id


def weibo_account(stack: Stack, uid: str, token: str, **sandbox: Any) -> int:
    stack.sandbox_call("POST", "/weibo/_sandbox/accounts", json={"uid": uid, "access_token": token, **sandbox})
    return add_account(
        "weibo",
        f"weibo {uid}",
        {"access_token": token, "uid": uid},
        {"base_url": "{sandbox}/weibo", "safe_domain": "{sandbox}", "rip": "127.0.0.1"},
    )


def deliveries_by_kind(stack: Stack, post_id: int) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in stack.post(post_id)["deliveries"]}


def settled(stack: Stack, post_id: int, state: str = "published"):
    def check() -> Any:
        info = stack.post(post_id)
        return info if info["state"] == state else None

    return check


def statuses(stack: Stack, uid: str) -> list[dict[str, Any]]:
    return [s for s in stack.sandbox_call("GET", "/weibo/_sandbox/state")["statuses"] if s["uid"] == uid]


def test_weibo_waits_for_the_website_url(stack: Stack) -> None:
    site = stack.website_account("wb1")
    weibo = weibo_account(stack, "6000000001", "wb-token-1")
    post_id = stack.publish([site, weibo], title="职工运动会开幕", body="本届运动会设12个项目。")
    info = stack.wait_for(settled(stack, post_id), what="website and weibo published")
    by_kind = {d["kind"]: d for d in info["deliveries"]}
    website, status = by_kind["website"], by_kind["weibo"]
    assert datetime.fromisoformat(status["published_at"]) >= datetime.fromisoformat(website["published_at"])
    posted = statuses(stack, "6000000001")
    assert len(posted) == 1
    sent = posted[0]["sent_text"]
    assert sent.startswith("【职工运动会开幕】本届运动会设12个项目。")
    assert website["remote_url"].split("?")[0] in sent and f"mm=mm-{status['id']}" in sent
    assert status["remote_id"] == posted[0]["idstr"]


def test_weibo_expired_token_needs_reauth(stack: Stack) -> None:
    from core.db import session_scope
    from publisher.domain.models import Account

    site = stack.website_account("wb2")
    weibo = weibo_account(stack, "6000000031", "wb-token-31", expires_in=1)
    # expire it on the sandbox's clock now, rather than racing a 1-second lifetime against the website delivery
    stack.sandbox_call("POST", "/weibo/_sandbox/clock/advance", json={"seconds": 5})
    post_id = stack.publish([site, weibo])
    info = stack.wait_for(settled(stack, post_id, "partially_published"), what="weibo needs_reauth")
    status = {d["kind"]: d for d in info["deliveries"]}["weibo"]
    assert status["state"] == "needs_reauth" and status["attempts"] == 1 and "21327" in status["last_error"]
    with session_scope() as s:
        assert s.get(Account, weibo).status == "needs_reauth"


def test_toutiao_review_is_settled_by_reconcile(stack: Stack) -> None:
    stack.sandbox_call("POST", "/toutiao/_sandbox/accounts", json={"sessionid": "tt-s1", "review_s": 3600})
    toutiao = add_account(
        "toutiao",
        "toutiao console",
        {"sessionid": "tt-s1", "expires_at": "2099-01-01T00:00:00+00:00"},
        {"base_url": "{sandbox}/toutiao"},
    )
    post_id = stack.publish([toutiao], title="职工书屋新书推荐", body="本月新到图书三百册。")

    def awaiting() -> Any:
        d = deliveries_by_kind(stack, post_id).get("toutiao", {})
        return d if d.get("state") == "awaiting_confirmation" else None

    stack.wait_for(awaiting, what="toutiao awaiting review")
    stack.sandbox_call("POST", "/toutiao/_sandbox/clock/advance", json={"seconds": 3601})
    info = stack.wait_for(settled(stack, post_id), what="review passed, reconciled")
    delivery = info["deliveries"][0]
    assert delivery["remote_url"].endswith(f"/toutiao/item/{delivery['remote_id']}/")
    articles = stack.sandbox_call("GET", "/toutiao/_sandbox/state")["articles"]
    assert [a["pgc_id"] for a in articles if a["title"] == "职工书屋新书推荐"] == [delivery["remote_id"]]


def test_toutiao_assisted_package_then_confirm(stack: Stack) -> None:
    from publisher.delivery.assisted import confirm_manual, package_for

    assisted = add_account("toutiao", "toutiao assisted", {}, {"mode": "manual"})
    post_id = stack.publish([assisted], title="困难职工帮扶政策解读", body="帮扶对象包括……\n\n申请流程如下。")

    def waiting() -> Any:
        d = deliveries_by_kind(stack, post_id).get("toutiao", {})
        return d if d.get("state") == "awaiting_manual" else None

    delivery = stack.wait_for(waiting, what="awaiting_manual")
    editor = stack.editor.principal  # an assisted delivery is handled by an editor of the account's union
    archive = zipfile.ZipFile(io.BytesIO(package_for(editor, delivery["id"])))
    assert archive.read("title.txt").decode().strip() == "困难职工帮扶政策解读"
    assert f"matrix delivery confirm {delivery['id']} --url" in archive.read("README.txt").decode()
    confirm_manual(editor, delivery["id"], "https://www.toutiao.com/item/7300000000000099999/")
    info = stack.wait_for(settled(stack, post_id), what="published after confirmation")
    assert info["deliveries"][0]["remote_url"] == "https://www.toutiao.com/item/7300000000000099999/"
