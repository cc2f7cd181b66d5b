"""Fixtures of the monitor's tests: the feed and robot sandboxes on real sockets, an SMTP sink, and a migrated
installation with people."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.sandbox.server import RunningServer, serve_in_thread
from monitor import robot_sandbox
from monitor.sandbox import create_app
from monitor.settings import MonitorSettings, reset_monitor_settings
from monitor.smtp_sandbox import SmtpSink
from tests.support.people import CITY, NEIGHBOUR, PROVINCE, Person, make_user


class Feeds:
    """The feed sandbox's control API, and the URL of a route."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server

    def url(self, route: str) -> str:
        return f"{self.server.url}/{route}"

    def call(self, action: str, **body: Any) -> Any:
        method = "GET" if action == "state" else "POST"
        r = httpx.request(method, f"{self.server.url}/_sandbox/{action}", json=body or None, timeout=10)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="session")
def feed_server() -> Iterator[RunningServer]:
    server = serve_in_thread(create_app())
    yield server
    server.stop()


@pytest.fixture()
def feeds(feed_server: RunningServer) -> Feeds:
    control = Feeds(feed_server)
    control.call("reset")
    return control


@pytest.fixture()
def settings() -> MonitorSettings:
    """Fast limits for tests: short deadlines, no spacing, a small body cap, pause after three failures."""
    return MonitorSettings(
        timeout_s=2, deadline_s=2, host_spacing_s=0, host_concurrency=4, body_max_bytes=2_000_000, pause_after=3
    )


@pytest.fixture()
def people(env: Path, rules_only: None) -> dict[str, Person]:
    """A province monitor, a city monitor, a neighbour's monitor and a city editor."""
    reset_monitor_settings()
    return {
        "province": make_user("prov-monitor", ("monitor", PROVINCE)),
        "city": make_user("city-monitor", ("monitor", CITY)),
        "neighbour": make_user("nb-monitor", ("monitor", NEIGHBOUR)),
        "editor": make_user("city-editor", ("editor", CITY)),
    }


class Robots:
    """The robot sandbox's control API, and the webhook URLs of the robots registered on it."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server

    def add(self, kind: str, token: str, **body: Any) -> str:
        """Register a robot; its webhook URL."""
        r = httpx.post(f"{self.server.url}/_sandbox/robots", json={"kind": kind, "token": token, **body}, timeout=10)
        r.raise_for_status()
        return self.webhook(kind, token)

    def webhook(self, kind: str, token: str) -> str:
        base = self.server.url
        return {
            "wecom": f"{base}/wecom/cgi-bin/webhook/send?key={token}",
            "dingtalk": f"{base}/dingtalk/robot/send?access_token={token}",
            "feishu": f"{base}/feishu/open-apis/bot/v2/hook/{token}",
        }[kind]

    def messages(self, kind: str, token: str) -> dict[str, list[dict[str, Any]]]:
        r = httpx.get(f"{self.server.url}/_sandbox/messages", params={"kind": kind, "token": token}, timeout=10)
        r.raise_for_status()
        return r.json()

    def call(self, action: str, **body: Any) -> Any:
        r = httpx.post(f"{self.server.url}/_sandbox/{action}", json=body, timeout=10)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="session")
def robot_server() -> Iterator[RunningServer]:
    server = serve_in_thread(robot_sandbox.create_app())
    yield server
    server.stop()


@pytest.fixture()
def robots(robot_server: RunningServer) -> Robots:
    control = Robots(robot_server)
    control.call("reset")
    return control


@pytest.fixture()
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(username="alerts", password="smtp-pass-of-test").start()
    yield sink
    sink.stop()
