"""Observability (issue 12 item 6): Prometheus metrics counted where things happen (platform calls, screening)
and read from the source of truth at scrape time (deliveries and posts by state, queue depth), summed over the
processes of a machine, served at GET /metrics to an admin or to the scrape token only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from channels.base import AccountInfo
from channels.website import WebsiteChannel
from core.metrics import endpoint_label, exposition
from core.settings import reset_settings
from publisher.interfaces.api import app
from tests.support.people import CITY, PROVINCE, Person, make_user

TOKEN = "scrape-token-of-this-test-0123456789abcdef"


@pytest.fixture()
def people(env: Path, rules_only: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Person]:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return {"admin": make_user("admin", ("admin", PROVINCE)), "editor": make_user("editor", ("editor", CITY))}


def test_labels_carry_no_query_and_no_ids() -> None:
    assert endpoint_label("/cgi-bin/draft/add?access_token=SECRET") == "/cgi-bin/draft/add"
    assert endpoint_label("https://h.example/wp/v2/posts/123?context=edit") == "/wp/v2/posts/:id"
    assert endpoint_label("/2/statuses/share.json") == "/2/statuses/share.json"


def test_a_platform_call_is_timed_by_channel_endpoint_and_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    client = httpx.Client(
        base_url="https://site.example", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={}))
    )
    account = AccountInfo(
        id=1, kind="website", name="官网", credentials={}, config={"base_url": "https://site.example"}
    )
    channel = WebsiteChannel(account, client=client)
    channel.request("GET", "/wp-json/wp/v2/posts/77?context=edit")
    text = exposition(None).decode()
    assert (
        'matrix_platform_request_seconds_count{channel="website",endpoint="/wp-json/wp/v2/posts/:id",outcome="200"}'
        in text
    )
    assert "context=edit" not in text


def test_metrics_need_an_admin_or_the_scrape_token(people: dict[str, Person], monkeypatch: pytest.MonkeyPatch) -> None:
    client = TestClient(app)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=people["editor"].headers).status_code == 403
    r = client.get("/metrics", headers=people["admin"].headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "matrix_queue_depth{queue=" in r.text and "# TYPE matrix_deliveries gauge" in r.text
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401  # not set yet
    monkeypatch.setenv("MATRIX_METRICS_TOKEN", TOKEN)
    reset_settings()
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    monkeypatch.setenv("MATRIX_METRICS_TOKEN", "short")  # too short to be a secret: lets nobody in
    reset_settings()
    assert client.get("/metrics", headers={"Authorization": "Bearer short"}).status_code == 401


def test_the_processes_of_a_machine_are_summed(tmp_path: Path) -> None:
    """Two processes count (as a worker's pool does); a third, the scrape, sees both."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = "from core.metrics import SCREENING_SECONDS as s; s.observe(0.2)"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    scrape = "from core.metrics import exposition; print(exposition(None).decode())"
    out = subprocess.run(
        [sys.executable, "-c", scrape], env=env, check=True, timeout=60, capture_output=True, text=True
    )
    assert "matrix_screening_seconds_count 2.0" in out.stdout, out.stdout
