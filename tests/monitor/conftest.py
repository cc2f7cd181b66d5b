"""Fixtures of the monitor's tests: the feed sandbox on a real socket, and a migrated installation with people."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.sandbox.server import RunningServer, serve_in_thread
from monitor.sandbox import create_app
from monitor.settings import MonitorSettings, reset_monitor_settings
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
