"""A burst through a real Celery worker and beat on the feed sandbox's fake clock (issue 13).

The worker's clock is the feed sandbox's: both are the real time plus one offset, the sandbox's moved with its
``clock`` control and the worker's with ``MATRIX_CLOCK_OFFSET_S`` (read once per process, so the worker is
started again at each fake hour). Seven ordinary hours of the sandbox's everyday posts, every source polled by
the worker once an hour, give the rule its baseline and the monitor the six hours of items its rules need before
they may burst; then the sandbox's ``burst`` control retells one story many times within one hour. Beat's
``monitor.detect_bursts`` finds it: exactly one burst for the rule and hour, naming the story's words, told in-app
to the rule's owner and sent once to the rule's robot, and no second one on the detection runs that follow.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from channels.sandbox.server import RunningServer, serve_in_thread
from monitor import robot_sandbox
from monitor.sandbox import create_app
from tests.monitor.conftest import Feeds, Robots
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(300)

HOUR_S = 3600
# A fixed fake start, five minutes into an hour: the sandbox's everyday posts are seeded by route and fake hour,
# so the baseline is the same on every run, and no phase of the test (seconds each) crosses an hour boundary.
FAKE_START = datetime(2026, 6, 1, 0, 5, tzinfo=UTC)
# burst_min_history_h is 6: the earliest item must be at or before the start of the hour six before the burst's,
# and the first poll is minutes into its hour, so the baseline starts seven hours before the burst hour
BASELINE_HOURS = 7
ROUTES = ["weibo/keyword/讨薪", "weibo/keyword/加班", "toutiao/user/职工", "wechat/mp/工会"]  # 3 posts an hour each
RULE_QUERY = "欠薪 OR 拖欠 OR 讨薪 OR 加班 OR 社保"  # four of the sandbox's ten everyday topics, and the burst
# One story retold from three cities: the sandbox's ``burst`` makes at most four different texts of one text
# (its edits are a prefix, punctuation, a tag; content keys ignore punctuation), so three retellings of four
# edits each give twelve items.
STORY_TITLE = "食品厂突然停工"
TELLINGS = [
    ("南京", "南京某食品厂突然停工，三百名工人聚集厂门口讨要欠薪。"),
    ("苏州", "苏州某食品厂突然停工，五百多名工人聚集厂门口讨要欠薪。"),
    ("无锡", "无锡某食品厂突然停工，上百名工人聚集在厂门口讨要欠薪。"),
]
_DETECTED = re.compile(rb"Task monitor\.detect_bursts\[[^\]]+\] succeeded")


@pytest.fixture(scope="module")
def burst_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Feeds, Robots]]:
    """The Stack of ``test_scenario.py`` (embedded worker and beat), with beat looking for bursts every second
    and the worker's clock on the feed sandbox's fake clock from the start."""
    feed_server: RunningServer = serve_in_thread(create_app())
    robot_server: RunningServer = serve_in_thread(robot_sandbox.create_app())
    feeds = Feeds(feed_server)
    feeds.call("reset")
    fake_now = feeds.call("clock", advance_s=FAKE_START.timestamp() - time.time())["now"]
    extra = {
        "MATRIX_CLOCK_OFFSET_S": str(fake_now - time.time()),
        "MATRIX_MONITOR_POLL_INTERVAL_S": "1",
        "MATRIX_MONITOR_BURST_INTERVAL_S": "1",
        "MATRIX_MONITOR_HOST_SPACING_S": "0",
        "MATRIX_MONITOR_HOST_CONCURRENCY": "4",
        "MATRIX_MONITOR_DEADLINE_S": "3",
        "MATRIX_MONITOR_TIMEOUT_S": "3",
        "MATRIX_MONITOR_ALERT_SEND_INTERVAL_S": "1",
    }
    stack = Stack("embedded", tmp_path_factory.mktemp("burst-stack"), extra_env=extra)
    stack.extra_env["MATRIX_OUTBOUND_ALLOW"] = (
        f"{feed_server.host}:{feed_server.port},{robot_server.host}:{robot_server.port}"
    )
    stack.start()
    yield stack, feeds, Robots(robot_server)
    if "worker" in stack.procs:  # nothing of the test is in flight: no warm shutdown to wait 15 s for
        stack.kill_worker()
    stack.stop()
    feed_server.stop()
    robot_server.stop()


def _next_hour(stack: Stack, feeds: Feeds, burst: bool = False) -> None:
    """One hour on: the worker stopped, the sandbox's clock moved (and the burst told, when ``burst``), the
    worker started on the new offset (this process follows too). Beat only sends the ticks, by its own real
    clock, so it keeps running; the worker is killed rather than shut down because the hour's work is done."""
    stack.kill_worker()  # first: a poll between the two clocks' moves would stamp the new hour's posts as old
    fake_now = feeds.call("clock", advance_s=HOUR_S)["now"]
    if burst:
        for city, text in TELLINGS:
            feeds.call("burst", route=ROUTES[0], title=f"{city}网友：{STORY_TITLE}", text=text, count=12)
    offset = str(fake_now - time.time())
    stack.env["MATRIX_CLOCK_OFFSET_S"] = os.environ["MATRIX_CLOCK_OFFSET_S"] = offset
    stack.refresh_settings()
    stack.start_worker()


def _polled(stack: Stack, sources: list[int], times: int) -> None:
    """Wait until the worker has fetched every source ``times`` times without a failure (once a fake hour: their
    interval is ten minutes of the fake clock, so each jump of an hour makes them due again)."""
    from core.db import session_scope
    from monitor.models import Source

    def done() -> bool:
        with session_scope() as s:
            rows = s.scalars(select(Source).where(Source.id.in_(sources))).all()
            return all(r.fetch_count >= times and r.failures == 0 for r in rows)

    stack.wait_for(done, timeout=60, what=f"every source fetched {times} time(s)")


def _detections(stack: Stack) -> int:
    """How many ``monitor.detect_bursts`` runs the workers have finished (each start appends to one log)."""
    return len(_DETECTED.findall((stack.tmp / "worker.log").read_bytes()))


def test_a_burst_on_the_fake_clock_is_alerted_once_through_the_workers(
    burst_stack: tuple[Stack, Feeds, Robots],
) -> None:
    from core.clock import now
    from core.db import session_scope
    from monitor import alert_channels, bursts, services
    from monitor.models import AlertSend, Burst, Item, RuleHit
    from publisher.interfaces.api import app
    from tests.support.people import CITY, make_user

    stack, feeds, bots = burst_stack
    owner = make_user("burst-monitor", ("monitor", CITY))
    with session_scope() as s:
        rule = services.add_rule(s, owner.principal, name="欠薪加班", query_text=RULE_QUERY, organization=CITY).id
        sources = [
            services.add_source(s, owner.principal, url=feeds.url(r), organization=CITY, interval_s=600).id
            for r in ROUTES
        ]
    first_hour = bursts.hour_of(now())
    assert first_hour == bursts.hour_of(FAKE_START)  # this process is on the fake clock too

    # the baseline: the sandbox's everyday posts, every source polled by the worker once an hour
    for h in range(BASELINE_HOURS):
        if h:
            _next_hour(stack, feeds)
        _polled(stack, sources, h + 1)
    with session_scope() as s:
        hits = [bursts.hour_of(t) for t in s.scalars(select(RuleHit.created_at).where(RuleHit.rule_id == rule))]
        items = [bursts.hour_of(t) for t in s.scalars(select(Item.fetched_at))]
        assert s.scalar(select(Burst.id).where(Burst.key == f"rule:{rule}")) is None
    # the worker stamped each hour's items with its own fake hour: hits in most hours, a few an hour
    per_hour = [hits.count(first_hour + (h * timedelta(hours=1))) for h in range(BASELINE_HOURS)]
    assert len(hits) == sum(per_hour) >= 8 and max(per_hour) <= 4 and sum(1 for n in per_hour if n) >= 5, per_hour
    assert min(items) == first_hour and max(items) == first_hour + timedelta(hours=BASELINE_HOURS - 1)

    # the rule's robot, added now so that the baseline's ordinary alerts do not fill its 20-a-minute window
    with session_scope() as s:
        alert_channels.add_channel(s, owner.principal, kind="wecom", name="企微", organization=CITY,
                                   webhook=bots.add("wecom", "burst"), rules=[rule])  # fmt: skip

    # the burst hour: the story retold twelve times on one feed
    _next_hour(stack, feeds, burst=True)
    burst_hour = bursts.hour_of(now())
    assert burst_hour == first_hour + timedelta(hours=BASELINE_HOURS)

    def rule_bursts() -> Any:
        with session_scope() as s:
            found = s.scalars(select(Burst).where(Burst.key == f"rule:{rule}")).all()
            return found and [(b.hour_start, b.count, b.zscore, list(b.terms), b.id) for b in found]

    ((hour_start, count, z, terms, burst_id),) = stack.wait_for(rule_bursts, timeout=60, what="the rule's burst")
    assert bursts.hour_of(hour_start) == burst_hour
    assert count >= 12 and z >= 3.0, (count, z)
    assert "停工" in terms and "食品厂" in terms, terms  # the story's words rose
    assert "加班" not in terms and "社保" not in terms, terms  # the everyday words did not

    def robot_told() -> Any:
        with session_scope() as s:
            send = s.scalar(select(AlertSend).where(AlertSend.burst_id == burst_id))
            if send is None or send.state != "sent":
                return None
        return [m["content"] for m in bots.messages("wecom", "burst")["accepted"] if "舆情突增" in m["content"]]

    (message,) = stack.wait_for(robot_told, timeout=60, what="the burst sent to the robot")
    assert "规则「欠薪加班」" in message and "停工" in message and "上升词" in message

    # beat's next detection runs: no second burst of the rule, no second message, no second notification
    seen = _detections(stack)
    stack.wait_for(lambda: _detections(stack) >= seen + 3, timeout=60, what="three more detection runs")
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Burst).where(Burst.key == f"rule:{rule}")) == 1
        assert s.scalar(select(func.count()).select_from(AlertSend).where(AlertSend.burst_id == burst_id)) == 1
    robot = [m["content"] for m in bots.messages("wecom", "burst")["accepted"] if "舆情突增" in m["content"]]
    assert robot == [message]  # the rule's channel took the rule's burst, once (story bursts are not its)
    told = TestClient(app).get("/notifications", headers=owner.headers).json()
    in_app = [n["message"] for n in told if n["kind"] == "monitor.burst" and "规则「欠薪加班」" in n["message"]]
    assert len(in_app) == 1 and "停工" in in_app[0], told
