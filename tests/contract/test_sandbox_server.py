"""The combined sandbox as the service meets it: ``python -m channels.sandbox``, the demo-accounts endpoint,
the shared image helpers, and the rule that the sandboxes import nothing of the production code.

This module imports only ``channels.sandbox`` (no adapter, no ``tests.support``; the server is the shared
``sandbox_server`` fixture), so its tests pin the sandboxes, not the adapters.
"""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import channels.sandbox
from channels.sandbox import SANDBOXES, demo_accounts
from channels.sandbox.media import SAMPLE_PNG, image_sources, image_type, png_size
from channels.sandbox.server import RunningServer

SANDBOX_DIR = Path(channels.sandbox.__file__).parent
REPO_ROOT = SANDBOX_DIR.parent.parent


# ------------------------------------------------------------------------------ demo accounts


def test_demo_accounts_endpoint_fills_in_the_requests_own_url(sandbox_server: RunningServer) -> None:
    reply = httpx.get(f"{sandbox_server.url}/_sandbox/demo-accounts", timeout=10)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/json")
    accounts = reply.json()
    assert accounts == demo_accounts(sandbox_server.url)
    assert {a["kind"] for a in accounts} >= {"website", "wechat", "weibo", "toutiao"}
    website = next(a for a in accounts if a["kind"] == "website")
    assert website["config"]["base_url"] == f"{sandbox_server.url}/wp/demo"
    assert "{sandbox}" not in json.dumps(accounts)


def test_demo_accounts_follow_the_host_the_client_used(sandbox_server: RunningServer) -> None:
    """Behind a name (a container, a proxy) the URLs name that host, not the address the server binds to."""
    reply = httpx.get(
        f"{sandbox_server.url}/_sandbox/demo-accounts", headers={"Host": "sandbox.internal:8100"}, timeout=10
    )
    accounts = reply.json()
    assert accounts == demo_accounts("http://sandbox.internal:8100")
    weibo = next(a for a in accounts if a["kind"] == "weibo" and a["config"].get("long_article"))
    assert weibo["config"]["default_cover"] == "http://sandbox.internal:8100/weibo/static/cover.png"


def test_index_links_every_sandbox_and_the_demo_accounts(sandbox_server: RunningServer) -> None:
    page = httpx.get(f"{sandbox_server.url}/", timeout=10).text
    assert all(f"{sandbox_server.url}{prefix}/_sandbox/state" in page for prefix, _target in SANDBOXES.values())
    assert f"{sandbox_server.url}/_sandbox/demo-accounts" in page


# --------------------------------------------------------------------------- python -m entry point


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_python_m_channels_sandbox_serves_the_combined_app() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "channels.sandbox", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = httpx.get(f"{url}/_sandbox/demo-accounts", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"python -m channels.sandbox did not start: {output}")
                time.sleep(0.1)
        assert reply.json() == demo_accounts(url)
        assert httpx.get(f"{url}/wp/_sandbox/state", timeout=5).status_code == 200
        assert httpx.get(f"{url}/toutiao/static/sample.png", timeout=5).content == SAMPLE_PNG
    finally:
        process.terminate()
        process.wait(10)


# ------------------------------------------------------------------------------ apart from production


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", sorted(SANDBOX_DIR.rglob("*.py")), ids=lambda p: p.name)
def test_sandbox_modules_import_only_the_sandbox_package(path: Path) -> None:
    first_party = ("channels", "publisher", "core", "workers", "moderation", "monitor", "tests")
    foreign = {
        m
        for m in _imported_modules(path)
        if m.split(".")[0] in first_party and m != "channels.sandbox" and not m.startswith("channels.sandbox.")
    }
    assert not foreign, f"{path.name} imports production code: {sorted(foreign)}"


def test_building_every_sandbox_loads_no_production_module() -> None:
    """The same rule at run time (a fresh interpreter: this one has loaded the adapters for other tests)."""
    script = (
        "import json, sys\n"
        "import channels.sandbox\n"
        "channels.sandbox.create_app()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    production = {"publisher", "core", "workers", "moderation", "monitor"}
    # the monitor's robot and feed sandboxes are mounted here too: sandboxes themselves (stdlib + Starlette),
    # under a package whose __init__ imports nothing
    sandboxes = {"monitor", "monitor.robot_sandbox", "monitor.sandbox"}
    foreign = [
        m
        for m in json.loads(done.stdout)
        if (m.split(".")[0] in production and m not in sandboxes)
        or (m.startswith("channels.") and not m.startswith("channels.sandbox"))
    ]
    assert not foreign


# ---------------------------------------------------------------------------------- shared images


def test_sample_png_is_the_static_asset() -> None:
    assert SAMPLE_PNG == (SANDBOX_DIR / "assets" / "sample.png").read_bytes()
    assert image_type(SAMPLE_PNG) == "image/png" and png_size(SAMPLE_PNG) == (8, 8)


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (SAMPLE_PNG, "image/png"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 16, "image/jpeg"),
        (b"GIF89a" + b"\x00" * 8, "image/gif"),
        (b"GIF87a" + b"\x00" * 8, "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"BM" + b"\x00" * 16, "image/bmp"),
        (b"\xff\xd8not-a-jpeg", None),  # SOI without a marker after it
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"<html>", None),
        (b"", None),
    ],
)
def test_image_type_sniffs_magic_bytes(data: bytes, mime: str | None) -> None:
    assert image_type(data) == mime


def test_png_size_of_anything_else_is_zero() -> None:
    assert png_size(b"GIF89a" + b"\x00" * 30) == (0, 0) and png_size(SAMPLE_PNG[:20]) == (0, 0)


def test_image_sources_reads_img_src_in_order_once() -> None:
    body = (
        '<p><img src="https://a.example/1.png" alt=""><IMG SRC=\'https://a.example/2.png?x=1&amp;y=2\'/></p>'
        '<p><img alt="no src"><img src="https://a.example/1.png"></p>'
    )
    assert image_sources(body) == ["https://a.example/1.png", "https://a.example/2.png?x=1&y=2"]
