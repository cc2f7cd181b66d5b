"""WeChat: the default cover is uploaded once per app, and a removed article ends a delivery (issue 12).

Against the WeChat sandbox on a real socket (``wx_server`` / ``wx``), with the token caches production uses
(Redis, the database) next to the in-process one; the engine-level cases run ``deliver`` and ``check_delivery``
on an embedded installation (``env``: SQLite, whose token cache is the database's).

* Default cover: a post without a cover used to upload the packaged PNG as a new *permanent* material on every
  delivery. Its ``media_id`` now lives in the shared token cache under the app; a ``media_id`` the platform
  refuses (40007: deleted in the console, a reset sandbox) is replaced once and ``draft/add`` repeated once.
* Removed article: found by lookup, it was reported ``published`` (a deleted copy recorded as live), and where
  the published list leaves removed articles out, a lost submit's lookup waited for it forever.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from channels.base import PostContent
from channels.errors import InvalidRequest, OutcomeUnknown, Unavailable
from channels.sandbox.server import RunningServer
from channels.tokens import MemoryTokenCache, RedisTokenCache, SqlTokenCache, TokenCache
from channels.wechat import WeChatChannel
from core.db import session_scope
from core.metrics import TOKEN_REFRESHES
from publisher import services
from publisher.delivery.deliver import deliver
from publisher.delivery.reconcile import check_delivery
from publisher.domain.models import Delivery
from tests.support.contract import SandboxControl, make_ctx
from tests.support.people import PROVINCE, SYSTEM, Person, make_user
from tests.support.wechat import APPID, SECRET, app_state, factory, settings

# ------------------------------------------------------------------------------------------ helpers


def _redis() -> Any:
    """A Redis client (the production cache's store); skipped when Redis is unreachable (unless CI)."""
    import redis

    client = redis.Redis.from_url(os.environ.get("MATRIX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    try:
        client.ping()
    except Exception as exc:
        if os.environ.get("MATRIX_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis unreachable but MATRIX_TEST_REQUIRE_SERVICES=1: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    return client


@pytest.fixture(params=["memory", "sqlite", "redis"])
def caches(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], TokenCache]]:
    """Makes one cache per "worker" over one shared store (a dict, a database file, a Redis prefix)."""
    if request.param == "memory":
        shared = MemoryTokenCache()
        yield lambda: shared
    elif request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'tokens.db'}", connect_args={"timeout": 30})
        SqlTokenCache(engine).create_table()
        yield lambda: SqlTokenCache(engine)
        engine.dispose()
    else:
        client, prefix = _redis(), f"mmtest:{uuid.uuid4().hex}:"
        yield lambda: RedisTokenCache(client, prefix=prefix)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def _platform(server: RunningServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Call the sandbox's API as another client of the app would (the console, a colleague's tool)."""
    root = f"{server.url}/wechat/cgi-bin"
    token = httpx.post(
        f"{root}/stable_token", json={"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    ).json()["access_token"]
    reply = httpx.post(f"{root}/{path}", params={"access_token": token}, json=body, timeout=10).json()
    assert not reply.get("errcode"), reply
    return reply


def _faults_fired(wx: SandboxControl) -> tuple[int, int]:
    """(faults injected so far, scripted faults left): draft/add calls answered by a fault are not counted
    among the sandbox's calls, which counts only the requests that reached an endpoint."""
    snapshot = wx.http.get("/faults").json()
    return snapshot["injected"], sum(f["times"] for f in snapshot["scripted"])


def _threads(n: int, fn: Callable[[int], object]) -> list[object]:
    results: list[object] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


# ------------------------------------------------------------------------------------ default cover


def test_the_default_cover_is_uploaded_once_for_all_deliveries_of_an_app(
    wx: SandboxControl, wx_server: RunningServer, caches: Callable[[], TokenCache]
) -> None:
    """Three workers (each its own adapter and cache over one store), five deliveries without a cover: one
    permanent material, the same thumb_media_id in every draft."""
    adapters = [factory(wx_server, cache=caches())(None) for _ in range(3)]
    contexts = [make_ctx() for _ in range(5)]
    for i, ctx in enumerate(contexts):
        assert adapters[i % 3].publish(ctx).state == "awaiting_confirmation"
    state = app_state(wx)
    assert state["calls"]["material/add_material"] == 1
    assert len(state["materials"]) == 1
    assert {ctx.progress["thumb_media_id"] for ctx in contexts} == set(state["materials"])
    assert all(ctx.progress["default_cover"] for ctx in contexts)
    assert state["calls"]["draft/add"] == 5 and state["calls"]["freepublish/submit"] == 5
    for a in adapters:
        a.close()


def test_concurrent_first_deliveries_upload_the_default_cover_once(
    wx: SandboxControl, wx_server: RunningServer, caches: Callable[[], TokenCache]
) -> None:
    """Four workers start at once with nothing cached: one uploads, the others wait for it (single-flight)."""
    adapters = [factory(wx_server, cache=caches())(None) for _ in range(4)]
    results = _threads(4, lambda i: adapters[i].publish(make_ctx()))
    assert all(getattr(r, "state", None) == "awaiting_confirmation" for r in results), results
    state = app_state(wx)
    assert state["calls"]["material/add_material"] == 1 and len(state["materials"]) == 1
    for a in adapters:
        a.close()


def test_a_post_with_its_own_cover_uploads_it_and_leaves_the_default_alone(
    wx: SandboxControl, wx_server: RunningServer
) -> None:
    cache = MemoryTokenCache()
    ch = factory(wx_server, cache=cache)(None)
    cover = PostContent(title="有封面", body="正文", cover_url=f"{wx_server.url}/files/pic.jpg")
    first, second = make_ctx(cover), make_ctx(cover)
    ch.publish(first)
    ch.publish(second)
    assert first.progress["thumb_media_id"] != second.progress["thumb_media_id"]  # each post's own upload
    assert "default_cover" not in first.progress
    plain = make_ctx()
    ch.publish(plain)
    state = app_state(wx)
    assert state["calls"]["material/add_material"] == 3  # two own covers, the default once
    assert plain.progress["thumb_media_id"] not in (first.progress["thumb_media_id"], second.progress["thumb_media_id"])
    ch.close()


def test_a_deleted_default_cover_is_uploaded_again_and_the_draft_added_once_more(
    wx: SandboxControl, wx_server: RunningServer, caches: Callable[[], TokenCache]
) -> None:
    """Someone deletes the cached material in the console: draft/add answers 40007 (nothing added), the cover is
    uploaded once more, the draft added, and the next deliveries use the new media_id without uploading."""
    a, b = (factory(wx_server, cache=caches())(None) for _ in range(2))
    first = make_ctx()
    a.publish(first)
    old = first.progress["thumb_media_id"]
    _platform(wx_server, "material/del_material", {"media_id": old})

    second = make_ctx()
    assert b.publish(second).state == "awaiting_confirmation"
    new = second.progress["thumb_media_id"]
    assert new != old and second.progress["default_cover"]
    third = make_ctx()
    a.publish(third)  # the other worker: the replaced entry, no upload
    assert third.progress["thumb_media_id"] == new
    state = app_state(wx)
    assert state["calls"]["material/add_material"] == 2
    assert state["calls"]["draft/add"] == 4  # 1 + (refused, repeated) + 1
    assert state["calls"]["freepublish/submit"] == 3 and len(state["jobs"]) == 3
    assert state["materials"] == [new]
    a.close()
    b.close()


def test_a_resumed_attempt_replaces_a_default_cover_deleted_since_it_was_saved(
    wx: SandboxControl, wx_server: RunningServer
) -> None:
    """The first attempt saved the cached thumb_media_id and stopped at draft/add (busy); the material is deleted
    before the retry, which resumes from the saved progress, replaces the cover and publishes once."""
    ch = factory(wx_server)(None)
    ctx = make_ctx()
    wx.faults(path="draft/add", errcode=-1, times=1)
    with pytest.raises(Unavailable):
        ch.publish(ctx)
    saved = ctx.progress["thumb_media_id"]
    assert "media_id" not in ctx.progress
    _platform(wx_server, "material/del_material", {"media_id": saved})
    assert ch.publish(ctx).state == "awaiting_confirmation"
    assert ctx.progress["thumb_media_id"] != saved
    state = app_state(wx)
    assert state["calls"]["material/add_material"] == 2 and state["calls"]["freepublish/submit"] == 1
    assert len(state["jobs"]) == 1 and state["drafts"] == []
    ch.close()


def test_a_second_refusal_of_the_cover_fails_the_attempt_after_one_replacement(
    wx: SandboxControl, wx_server: RunningServer
) -> None:
    ch = factory(wx_server)(None)
    wx.faults(path="draft/add", errcode=40007, times=2)
    with pytest.raises(InvalidRequest) as info:
        ch.publish(make_ctx())
    assert info.value.code == 40007
    assert _faults_fired(wx) == (2, 0)  # draft/add twice: the first call and its one repeat
    calls = app_state(wx)["calls"]
    assert calls["material/add_material"] == 2  # the cached cover and its one replacement
    assert "freepublish/submit" not in calls
    ch.close()


def test_a_refused_cover_of_the_post_itself_is_not_replaced(wx: SandboxControl, wx_server: RunningServer) -> None:
    """Only the cached default is ours to replace: a post's own cover refused stays a permanent error."""
    ch = factory(wx_server)(None)
    wx.faults(path="draft/add", errcode=40007, times=2)
    with pytest.raises(InvalidRequest):
        ch.publish(make_ctx(PostContent(title="有封面", body="正文", cover_url=f"{wx_server.url}/files/pic.jpg")))
    assert _faults_fired(wx) == (1, 1)  # draft/add once, not repeated
    assert app_state(wx)["calls"]["material/add_material"] == 1
    ch.close()


def test_the_cover_upload_is_no_token_refresh_in_the_metrics(wx: SandboxControl, wx_server: RunningServer) -> None:
    def refreshes(label: str) -> float:
        # read from the collected samples: asking .labels() would create the series being checked for
        samples = [m for metric in TOKEN_REFRESHES.collect() for m in metric.samples if m.name.endswith("_total")]
        return sum(m.value for m in samples if m.labels.get("channel") == label)

    tokens_before, covers_before = refreshes("wechat"), refreshes("wechat-cover")
    ch = factory(wx_server)(None)
    ch.publish(make_ctx())
    assert refreshes("wechat") == tokens_before + 1 and refreshes("wechat-cover") == covers_before == 0
    ch.close()


# -------------------------------------------------------------------------------- sandbox fidelity


def test_the_sandbox_refuses_a_material_of_another_app_or_a_deleted_one(
    wx: SandboxControl, wx_server: RunningServer
) -> None:
    """As WeChat: a thumb_media_id is a permanent material of the app itself (40007 otherwise)."""
    wx.add_account(appid="wxtest0000000000other", secret="other-secret", name="another app")
    other = factory(wx_server, appid="wxtest0000000000other", secret="other-secret")(None)
    foreign = other.default_cover_media_id()
    ch = factory(wx_server)(None)
    with pytest.raises(InvalidRequest) as info:
        ch.publish(make_ctx(progress={"thumb_media_id": foreign}))
    assert info.value.code == 40007
    mine = ch.default_cover_media_id()
    _platform(wx_server, "material/del_material", {"media_id": mine})
    root = f"{wx_server.url}/wechat/cgi-bin"
    token = httpx.post(
        f"{root}/stable_token", json={"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    ).json()["access_token"]
    again = httpx.post(f"{root}/material/del_material", params={"access_token": token}, json={"media_id": mine})
    assert again.json()["errcode"] == 40007  # deleted already
    assert app_state(wx)["materials"] == []
    other.close()
    ch.close()


# --------------------------------------------------------------------------------- removed articles


def _submit_lost_then_published(wx: SandboxControl, ch: WeChatChannel, ctx: Any) -> str:
    """The submit lands but its answer is lost; the platform publishes the article. Returns its article_id."""
    wx.faults(path="freepublish/submit", drop_after_commit=True)
    with pytest.raises(OutcomeUnknown):
        ch.publish(ctx)
    assert "publish_id" not in ctx.progress
    wx.advance(60)
    return app_state(wx)["articles"][0]["article_id"]


def _remove(wx: SandboxControl, server: RunningServer, article_id: str, how: str) -> None:
    """The article leaves the platform: deleted by the account (its console, another tool) or banned."""
    if how == "deleted":
        _platform(server, "freepublish/delete", {"article_id": article_id, "index": 1})
    else:
        wx.http.post(f"/articles/{article_id}/ban").raise_for_status()


@pytest.mark.parametrize("how", ["deleted", "banned"])
def test_a_removed_article_found_by_lookup_is_reported_for_its_status_not_as_live(
    wx: SandboxControl, wx_server: RunningServer, how: str
) -> None:
    """The published list still returns it (``is_deleted: true``): found, so never submitted again, but not
    ``published`` — the status check that follows reports it retracted, with the platform's reason."""
    ch = factory(wx_server)(None)
    ctx = make_ctx()
    article_id = _submit_lost_then_published(wx, ch, ctx)
    _remove(wx, wx_server, article_id, how)
    found = ch.lookup(ctx)
    assert found is not None and found.remote_id == article_id
    assert found.state == "awaiting_confirmation"
    status = ch.status(ctx)
    assert status.state == "retracted" and status.reason
    ch.retract(ctx)  # gone already: nothing to do, no error
    assert app_state(wx)["calls"]["freepublish/submit"] == 1
    ch.close()


def test_a_lost_submit_whose_article_was_removed_and_left_the_list_ends_instead_of_waiting_forever(
    wx: SandboxControl, wx_server: RunningServer
) -> None:
    """Where the published list leaves removed articles out, the draft has left the draft box and nothing is
    listed: while publishing may still be under way, look again later; once ``unlisted_after_s`` has passed it
    was removed, and the status check ends the delivery retracted. Never submitted twice."""
    settings(wx, list_removed=False)
    ch = factory(wx_server, submit_grace_s=0)(None)
    ctx = make_ctx()
    article_id = _submit_lost_then_published(wx, ch, ctx)
    _remove(wx, wx_server, article_id, "deleted")
    for _ in range(3):  # before the fix every look ended here, for ever
        with pytest.raises(OutcomeUnknown, match="draft box"):
            ch.lookup(ctx)
    ctx.progress["submit_started_at"] = time.time() - 86_401  # a day later
    found = ch.lookup(ctx)
    assert found is not None and found.state == "awaiting_confirmation"
    status = ch.status(ctx)
    assert status.state == "retracted" and "not listed" in (status.reason or "")
    ch.retract(ctx)
    calls = app_state(wx)["calls"]
    assert calls["freepublish/submit"] == 1 and calls.get("freepublish/delete") == 1  # only the removal itself
    ch.close()


def test_an_unlisted_submit_is_not_concluded_removed_while_the_draft_is_still_in_the_box(
    wx: SandboxControl, wx_server: RunningServer
) -> None:
    """The bound applies only to a submit that landed (draft gone): one that never reached the platform, a day
    on, is still sent again (once), as before."""
    ch = factory(wx_server, submit_grace_s=30)(None)
    ctx = make_ctx()
    wx.faults(path="freepublish/submit", status=503)
    with pytest.raises(Unavailable):
        ch.publish(ctx)
    ctx.progress["submit_started_at"] = time.time() - 86_401
    assert ch.lookup(ctx) is None
    assert ch.publish(ctx).state == "awaiting_confirmation"
    ch.close()


def test_a_submitted_article_removed_before_its_first_status_check_ends_retracted(
    wx: SandboxControl, wx_server: RunningServer
) -> None:
    ch = factory(wx_server)(None)
    ctx = make_ctx()
    ch.publish(ctx)
    wx.advance(60)
    _remove(wx, wx_server, app_state(wx)["articles"][0]["article_id"], "deleted")
    looked = ch.lookup(ctx)  # an attempt that looks first (publish_id saved)
    assert looked is not None and looked.state == "awaiting_confirmation"
    status = ch.status(ctx)
    assert status.state == "retracted" and "删除" in (status.reason or "")
    ch.close()


# ------------------------------------------------------------------------------------- the engine


@pytest.fixture()
def editor(env: Path) -> Person:
    return make_user("editor", ("editor", PROVINCE))


def _wechat_deliveries(server: RunningServer, editor: Person, n: int) -> list[int]:
    """``n`` posts without a cover to one WeChat account of the sandbox's test app, each with its delivery."""
    ids = []
    with session_scope() as s:
        account = services.add_account(
            s,
            SYSTEM,
            kind="wechat",
            name="测试公众号",
            credentials={"appid": APPID, "secret": SECRET},
            config={"base_url": f"{server.url}/wechat", "source_url": "https://www.example.org/"},
            organization=PROVINCE,
        )
        s.flush()
        for i in range(n):
            post = services.create_post(
                s, editor.principal, title=f"职工运动会{i}", body="欢迎报名。", accounts=[account.id], submit=False
            )
            post.state = "publishing"
            s.flush()
            d = Delivery(post_id=post.id, version_id=post.current_version_id, account_id=account.id)
            s.add(d)
            s.flush()
            ids.append(d.id)
    return ids


def _delivery(delivery_id: int) -> Delivery:
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        s.expunge(d)
        return d


def test_the_engine_uploads_the_default_cover_once_through_the_installations_cache(
    wx: SandboxControl, wx_server: RunningServer, editor: Person
) -> None:
    """``deliver`` as a worker runs it: the adapter's cache is the installation's (the database here)."""
    ids = _wechat_deliveries(wx_server, editor, 3)
    assert [deliver(d) for d in ids] == ["awaiting_confirmation"] * 3
    state = app_state(wx)
    assert state["calls"]["material/add_material"] == 1 and len(state["materials"]) == 1
    assert {_delivery(d).progress["thumb_media_id"] for d in ids} == set(state["materials"])


@pytest.mark.parametrize("listed", [True, False], ids=["removed-listed", "removed-unlisted"])
def test_the_engine_ends_a_lost_submit_of_a_removed_article_retracted(
    wx: SandboxControl, wx_server: RunningServer, editor: Person, listed: bool
) -> None:
    """A worker's submit answer is lost; the article goes live and is deleted on the platform. The status checks
    (``check_delivery``, as the status queue runs them) end the delivery ``retracted``, submitted once."""
    settings(wx, list_removed=listed, settle_s=0)
    (delivery_id,) = _wechat_deliveries(wx_server, editor, 1)
    wx.faults(path="freepublish/submit", drop_after_commit=True)
    assert deliver(delivery_id) == "unconfirmed"
    _remove(wx, wx_server, app_state(wx)["articles"][0]["article_id"], "deleted")
    if not listed:
        assert check_delivery(delivery_id) == "unconfirmed"  # publishing may still be under way: look later
        with session_scope() as s:
            d = s.get(Delivery, delivery_id)
            d.progress = {**d.progress, "submit_started_at": time.time() - 86_401}  # a day later
    assert check_delivery(delivery_id) == "awaiting_confirmation"
    assert check_delivery(delivery_id) == "retracted"
    d = _delivery(delivery_id)
    assert d.last_error and d.published_at is None
    assert app_state(wx)["calls"]["freepublish/submit"] == 1
