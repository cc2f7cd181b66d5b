"""The monitor through a real Celery worker and beat (embedded: SQLite + the SQLite broker) against the feed sandbox.

Beat's ``monitor.poll_due`` claims due sources and fans out ``monitor.poll_source`` on the monitor's own queue,
which the shared worker consumes. Five sources repost one item matching a rule: it is stored once, hit once,
alerted once; each hostile feed fails alone with its reason while the good ones are stored. The alert goes once to
each robot of the robot sandbox (signed, keyword in), a long one split in order, through ``monitor.send_alert``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from channels.sandbox.server import RunningServer, serve_in_thread
from monitor import robot_sandbox
from monitor.sandbox import create_app
from tests.monitor.conftest import Feeds, Robots
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def feed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Feeds]]:
    feed_server: RunningServer = serve_in_thread(create_app())
    robot_server: RunningServer = serve_in_thread(robot_sandbox.create_app())
    extra = {
        "MATRIX_MONITOR_POLL_INTERVAL_S": "1",
        "MATRIX_MONITOR_HOST_SPACING_S": "0",
        "MATRIX_MONITOR_HOST_CONCURRENCY": "4",
        "MATRIX_MONITOR_DEADLINE_S": "3",
        "MATRIX_MONITOR_TIMEOUT_S": "3",
        "MATRIX_MONITOR_ALERT_SEND_INTERVAL_S": "1",
    }
    stack = Stack("embedded", tmp_path_factory.mktemp("monitor-stack"), extra_env=extra)
    # the feed and robot sandboxes alone are allowed (this scenario reaches no platform sandbox)
    allow = f"{feed_server.host}:{feed_server.port},{robot_server.host}:{robot_server.port}"
    stack.extra_env["MATRIX_OUTBOUND_ALLOW"] = allow
    stack.start()
    stack.robots = Robots(robot_server)  # type: ignore[attr-defined]
    yield stack, Feeds(feed_server)
    stack.stop()
    feed_server.stop()
    robot_server.stop()


def test_reposts_are_stored_once_and_hostile_feeds_fail_alone(feed_stack: tuple[Stack, Feeds], tmp_path: Path) -> None:
    from core.db import session_scope
    from core.notify import Notification
    from monitor import services
    from monitor.models import Alert, Item, RuleHit, Sighting, Source
    from tests.support.people import CITY, make_user

    stack, feeds = feed_stack
    feeds.call("reset")
    monitor = make_user("scenario-monitor", ("monitor", CITY))
    routes = [f"weibo/user/{n}" for n in range(5)]
    feeds.call(
        "repost", routes=routes, title="某厂欠薪", text="某服装厂欠薪三个月，一百多名工人讨薪无果。", edits=False
    )
    for fault in ("malformed", "entities", "trickle", "redirect_private"):
        feeds.call("faults", route=f"bad/{fault}", fault=fault)
    with session_scope() as s:
        actor = monitor.principal
        good = [services.add_source(s, actor, url=feeds.url(r), organization=CITY).id for r in routes]
        bad = {
            f: services.add_source(s, actor, url=feeds.url(f"bad/{f}"), organization=CITY).id
            for f in ("malformed", "entities", "trickle", "redirect_private")
        }
        rule = services.add_rule(s, actor, name="欠薪", query_text="欠薪 OR 拖欠工资", organization=CITY).id

    def all_polled():
        with session_scope() as s:
            rows = s.scalars(select(Source).where(Source.id.in_(good + list(bad.values())))).all()
            return all(r.fetch_count >= 1 for r in rows)

    stack.wait_for(all_polled, timeout=90, what="every source polled by the worker")
    with session_scope() as s:
        items = s.scalars(select(Item).where(Item.title == "某厂欠薪")).all()
        assert len(items) == 1
        assert s.scalar(select(func.count()).select_from(Sighting).where(Sighting.item_id == items[0].id)) == 5
        assert s.scalar(select(func.count()).select_from(RuleHit).where(RuleHit.rule_id == rule)) == 1
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.rule_id == rule)) == 1
        assert s.scalar(select(func.count()).select_from(Notification).where(Notification.kind == "monitor.alert")) == 1
        reasons = {f: s.get(Source, i).last_error or "" for f, i in bad.items()}
        assert "malformed feed" in reasons["malformed"]
        assert "declares XML entities" in reasons["entities"]
        assert "took over 3 s" in reasons["trickle"]
        assert "link-local" in reasons["redirect_private"]
        assert all(s.get(Source, i).failures == 0 for i in good)


def test_an_alert_goes_once_to_each_robot_through_the_workers(feed_stack: tuple[Stack, Feeds]) -> None:
    from core.db import session_scope
    from monitor import alert_channels, robots, services
    from monitor.models import AlertSend
    from tests.support.people import CITY, make_user

    stack, feeds = feed_stack
    bots: Robots = stack.robots  # type: ignore[attr-defined]
    feeds.call("reset")
    bots.call("reset")
    monitor = make_user("robot-monitor", ("monitor", CITY))
    routes = [f"toutiao/user/{n}" for n in range(5)]
    story = {"title": "某厂强制加班", "text": "员工称每天强制加班到深夜，没有加班费。"}
    feeds.call("repost", routes=routes, edits=False, **story)
    line = "快递网点员工反映长期强制加班，每天工作超过12小时，加班费都没有。"
    long_text = "".join(f"第{n}条：{line}\n" for n in range(60))  # ~6 KB: two WeCom parts
    feeds.call("items", route="toutiao/user/long", items=[{"title": "网点加班调查", "text": long_text}])
    hooks = {
        "wecom": bots.add("wecom", "w"),
        "dingtalk": bots.add("dingtalk", "d", secret="SECding", keywords=["舆情"]),
        "feishu": bots.add("feishu", "f", secret="feishu-secret"),
    }
    with session_scope() as s:
        actor = monitor.principal
        for kind, hook in hooks.items():
            secret = {"dingtalk": "SECding", "feishu": "feishu-secret"}.get(kind, "")
            keyword = "舆情" if kind == "dingtalk" else ""
            alert_channels.add_channel(s, actor, kind=kind, name=kind, organization=CITY, webhook=hook, secret=secret,
                                       keyword=keyword)  # fmt: skip
        services.add_rule(s, actor, name="强制加班", query_text="强制 NEAR/4 加班", organization=CITY)
        for r in [*routes, "toutiao/user/long"]:
            services.add_source(s, actor, url=feeds.url(r), organization=CITY)

    def all_sent():
        with session_scope() as s:
            sends = s.scalars(select(AlertSend)).all()
            return len(sends) == 6 and all(x.state == "sent" for x in sends) and sends

    stack.wait_for(all_sent, timeout=120, what="both alerts sent on the three robots")
    with session_scope() as s:
        bodies = {(x.channel_id, x.alert_id): x for x in s.scalars(select(AlertSend))}
    for kind, token in (("wecom", "w"), ("dingtalk", "d"), ("feishu", "f")):
        got = bots.messages(kind, token)
        assert got["refused"] == [], (kind, got["refused"])
        contents = [m["content"] for m in got["accepted"]]
        short = [c for c in contents if "某厂强制加班" in c]
        assert len(short) == 1, kind  # once, for five reposts
        parts = [c for c in contents if "网点加班调查" in c or c.startswith(("[", "舆情 ["))]
        prefix = "舆情 " if kind == "dingtalk" else ""
        joined = "".join(robots.strip_part_header(c, prefix) for c in parts)
        long_send = next(x for x in bodies.values() if "网点加班调查" in x.body and x.parts_total == len(parts))
        assert joined == long_send.body  # in order, nothing lost
    wecom_parts = [c for c in (m["content"] for m in bots.messages("wecom", "w")["accepted"]) if c.startswith("[")]
    assert len(wecom_parts) >= 2  # the long alert was split on WeCom (4,096 bytes a message)
