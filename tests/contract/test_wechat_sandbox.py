"""The WeChat sandbox itself behaves like the platform: tokens, validation, quotas, T+1, pages, faults."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from channels.sandbox.server import RunningServer
from tests.support.contract import SandboxControl
from tests.support.wechat import APPID, PNG, SECRET, app_state, settings

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Api:
    """A bare client of the sandbox's platform endpoints (no adapter in between)."""

    def __init__(self, server: RunningServer) -> None:
        self.http = httpx.Client(base_url=f"{server.url}/wechat", timeout=10)

    def stable(self, force: bool = False, secret: str = SECRET) -> dict[str, Any]:
        body = {"grant_type": "client_credential", "appid": APPID, "secret": secret, "force_refresh": force}
        return self.http.post("/cgi-bin/stable_token", json=body).json()

    def classic(self) -> dict[str, Any]:
        params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
        return self.http.get("/cgi-bin/token", params=params).json()

    def call(self, path: str, token: str, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        if body is not None:
            kw["json"] = body
        return self.http.post(path, params={"access_token": token, **kw.pop("params", {})}, **kw).json()

    def cover(self, token: str) -> str:
        files = {"media": ("c.png", PNG, "image/png")}
        return self.call("/cgi-bin/material/add_material", token, params={"type": "image"}, files=files)["media_id"]


@pytest.fixture()
def api(wx: SandboxControl, wx_server: RunningServer) -> Api:
    client = Api(wx_server)
    yield client
    client.http.close()


def test_classic_token_invalidates_the_previous_one(api: Api) -> None:
    first = api.classic()["access_token"]
    assert api.call("/cgi-bin/draft/batchget", first, {"offset": 0, "count": 1})["total_count"] == 0
    second = api.classic()["access_token"]
    assert api.call("/cgi-bin/draft/batchget", first, {"offset": 0, "count": 1})["errcode"] == 40001
    assert "total_count" in api.call("/cgi-bin/draft/batchget", second, {"offset": 0, "count": 1})


def test_stable_token_is_stable_and_isolated_from_classic(api: Api) -> None:
    a, b = api.stable(), api.stable()
    assert a["access_token"] == b["access_token"] and a["expires_in"] > 7000
    api.classic()  # another system fetching a classic token does not stomp ours
    assert "total_count" in api.call("/cgi-bin/draft/batchget", a["access_token"], {"offset": 0, "count": 1})


def test_stable_token_force_refresh_rules(api: Api, wx: SandboxControl) -> None:
    old = api.stable()["access_token"]
    new = api.stable(force=True)["access_token"]
    assert new != old
    assert api.call("/cgi-bin/draft/batchget", old, {"offset": 0, "count": 1})["errcode"] == 40001
    assert api.stable(force=True)["errcode"] == 45011  # 30 s apart
    for _ in range(19):
        wx.advance(31)
        api.stable(force=True)
    wx.advance(31)
    assert api.stable(force=True)["errcode"] == 45009  # 20 a day
    assert api.stable(secret="nope")["errcode"] == 40125


def test_stable_token_expiry_and_early_renewal(api: Api, wx: SandboxControl) -> None:
    first = api.stable()["access_token"]
    wx.advance(7200 - 200)  # inside the last 300 s: a new token, the old one still valid
    renewed = api.stable()
    assert renewed["access_token"] != first and renewed["expires_in"] == 7200
    assert "total_count" in api.call("/cgi-bin/draft/batchget", first, {"offset": 0, "count": 1})
    wx.advance(300)
    assert api.call("/cgi-bin/draft/batchget", first, {"offset": 0, "count": 1})["errcode"] == 42001


def test_upload_checks(api: Api) -> None:
    token = api.stable()["access_token"]
    ok = api.call("/cgi-bin/media/uploadimg", token, files={"media": ("a.png", PNG, "image/png")})
    assert "/wechat/mmbiz/" in ok["url"] and httpx.get(ok["url"]).content == PNG
    gif = api.call("/cgi-bin/media/uploadimg", token, files={"media": ("a.gif", b"GIF89a" + b"0" * 9, "image/gif")})
    assert gif["errcode"] == 40005
    big = api.call("/cgi-bin/media/uploadimg", token, files={"media": ("a.png", PNG + b"0" * 1_000_001, "image/png")})
    assert big["errcode"] == 40009
    assert api.call("/cgi-bin/media/uploadimg", token, files={"other": ("a.png", PNG, "image/png")})["errcode"] == 41005


@pytest.mark.parametrize(
    ("article", "errcode"),
    [
        ({"title": "", "content": "<p>x</p>"}, 44003),
        ({"title": "t", "content": ""}, 44003),
        ({"title": "长" * 65, "content": "<p>x</p>"}, 45003),
        ({"title": "t", "digest": "摘" * 121, "content": "<p>x</p>"}, 45004),
        ({"title": "t", "content": "<p>x</p><script>alert(1)</script>"}, 45166),
        ({"title": "t", "content": '<p onclick="x()">x</p>'}, 45166),
        ({"title": "t", "content": "<p>" + "字" * 20_000 + "</p>"}, 45002),
        ({"title": "t", "content": "<p>x</p>", "thumb_media_id": "nope"}, 40007),
    ],
)
def test_draft_validation(api: Api, article: dict[str, Any], errcode: int) -> None:
    token = api.stable()["access_token"]
    article = {"thumb_media_id": api.cover(token), **article}
    reply = api.call("/cgi-bin/draft/add", token, {"articles": [article]})
    assert reply["errcode"] == errcode and "rid:" in reply["errmsg"]
    assert api.call("/cgi-bin/draft/add", token, {"articles": []})["errcode"] == 44003


def _publish(api: Api, token: str, title: str = "t") -> dict[str, Any]:
    article = {"title": title, "content": "<p>x</p>", "thumb_media_id": api.cover(token)}
    media_id = api.call("/cgi-bin/draft/add", token, {"articles": [article]})["media_id"]
    return api.call("/cgi-bin/freepublish/submit", token, {"media_id": media_id})


def test_daily_quota_resets_at_shanghai_midnight_of_the_fake_clock(api: Api, wx: SandboxControl) -> None:
    settings(wx, publish_quota=2)
    token = api.stable()["access_token"]
    assert "publish_id" in _publish(api, token)
    assert "publish_id" in _publish(api, token)
    assert _publish(api, token)["errcode"] == 45009
    now = wx.http.get("/clock").json()["now"]
    local = datetime.fromtimestamp(now, SHANGHAI)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), SHANGHAI)
    wx.advance(midnight.timestamp() - now - 5)
    token = api.stable()["access_token"]
    assert _publish(api, token)["errcode"] == 45009  # 5 s before midnight: still spent
    wx.advance(10)
    token = api.stable()["access_token"]
    assert "publish_id" in _publish(api, token)


def test_minute_quota(api: Api, wx: SandboxControl) -> None:
    settings(wx, minute_quota=3)
    token = api.stable()["access_token"]
    body = {"offset": 0, "count": 1}
    replies = [api.call("/cgi-bin/draft/batchget", token, body) for _ in range(4)]
    assert [r.get("errcode", 0) for r in replies] == [0, 0, 0, 45011]
    wx.advance(60)
    assert "total_count" in api.call("/cgi-bin/draft/batchget", token, body)


def test_publish_lifecycle_batchget_delete_and_pages(api: Api, wx: SandboxControl) -> None:
    token = api.stable()["access_token"]
    sub = _publish(api, token, title="页面标题")
    got = api.call("/cgi-bin/freepublish/get", token, {"publish_id": sub["publish_id"]})
    assert got["publish_status"] == 1
    assert api.call("/cgi-bin/freepublish/batchget", token, {"offset": 0, "count": 20})["total_count"] == 0
    wx.advance(31)
    token = api.stable()["access_token"]
    got = api.call("/cgi-bin/freepublish/get", token, {"publish_id": sub["publish_id"]})
    assert got["publish_status"] == 0
    url = got["article_detail"]["item"][0]["article_url"]
    assert f"mid={sub['msg_data_id']}" in url and "页面标题" in httpx.get(url).text
    listed = api.call("/cgi-bin/freepublish/batchget", token, {"offset": 0, "count": 20, "no_content": 1})
    news = listed["item"][0]["content"]["news_item"][0]
    assert listed["total_count"] == 1 and "content" not in news and news["url"] == url
    assert app_state(wx)["drafts"] == []  # the draft left the draft box once published
    assert api.call("/cgi-bin/freepublish/delete", token, {"article_id": got["article_id"], "index": 1}) == {
        "errcode": 0,
        "errmsg": "ok",
    }
    assert api.call("/cgi-bin/freepublish/get", token, {"publish_id": sub["publish_id"]})["publish_status"] == 5
    assert "删除" in httpx.get(url).text
    assert api.call("/cgi-bin/freepublish/delete", token, {"article_id": "zzz", "index": 1})["errcode"] == 53600


def test_a_submitted_draft_leaves_the_draft_box_and_a_failed_one_comes_back(api: Api, wx: SandboxControl) -> None:
    """What a lookup after a lost submit answer reads: the draft box tells a submission that landed from one that
    did not, and the same draft cannot be submitted twice while it is being published."""
    settings(wx, settle_s=60, publish_outcome=3)
    token = api.stable()["access_token"]
    article = {"title": "草稿", "content": "<p>x</p>", "thumb_media_id": api.cover(token)}
    media_id = api.call("/cgi-bin/draft/add", token, {"articles": [article]})["media_id"]
    assert "news_item" in api.call("/cgi-bin/draft/get", token, {"media_id": media_id})
    sub = api.call("/cgi-bin/freepublish/submit", token, {"media_id": media_id})
    assert "publish_id" in sub
    assert api.call("/cgi-bin/draft/get", token, {"media_id": media_id})["errcode"] == 40007  # being published
    assert api.call("/cgi-bin/freepublish/submit", token, {"media_id": media_id})["errcode"] == 40007
    assert app_state(wx)["drafts"] == [] and len(app_state(wx)["jobs"]) == 1
    wx.advance(61)
    token = api.stable()["access_token"]
    assert api.call("/cgi-bin/freepublish/get", token, {"publish_id": sub["publish_id"]})["publish_status"] == 3
    assert app_state(wx)["drafts"] == [media_id]  # publishing failed: back in the box, to be fixed and sent again
    assert "news_item" in api.call("/cgi-bin/draft/get", token, {"media_id": media_id})


def test_datacube_t_plus_one_and_growth(api: Api, wx: SandboxControl) -> None:
    token = api.stable()["access_token"]
    sub = _publish(api, token)
    wx.advance(31)
    now = wx.http.get("/clock").json()["now"]
    today = datetime.fromtimestamp(now, SHANGHAI).date().isoformat()
    token = api.stable()["access_token"]
    assert (
        api.call("/datacube/getarticletotaldetail", token, {"begin_date": today, "end_date": today})["errcode"] == 61501
    )
    assert (
        api.call("/datacube/getarticletotaldetail", token, {"begin_date": "x", "end_date": today})["errcode"] == 61500
    )
    wx.advance(3 * 86400)
    token = api.stable()["access_token"]
    data = api.call("/datacube/getarticletotaldetail", token, {"begin_date": today, "end_date": today})
    (row,) = data["list"]
    assert row["msgid"] == f"{sub['msg_data_id']}_1" and row["ref_date"] == today
    reads = [d["read_user"] for d in row["detail_list"]]
    assert len(reads) == 3 and reads == sorted(reads) and reads[-1] > 0


def test_injected_faults_use_wechat_envelope(api: Api, wx: SandboxControl) -> None:
    token = api.stable()["access_token"]
    wx.faults(path="draft/batchget", errcode=45009)
    reply = api.http.post("/cgi-bin/draft/batchget", params={"access_token": token}, json={"offset": 0, "count": 1})
    assert reply.status_code == 200 and reply.json()["errcode"] == 45009
    wx.faults(path="draft/batchget", status=503)
    assert api.http.post("/cgi-bin/draft/batchget", params={"access_token": token}, json={}).status_code == 503


def test_date_header_follows_the_fake_clock(api: Api, wx: SandboxControl) -> None:
    from email.utils import parsedate_to_datetime

    wx.advance(5 * 86400)
    reply = api.http.post("/cgi-bin/stable_token", json={})
    stamp = parsedate_to_datetime(reply.headers.get_list("date")[-1]).timestamp()
    assert abs(stamp - wx.http.get("/clock").json()["now"]) < 5
