"""Browser tests: Playwright for Python driving Debian's Chromium (``apt-get install chromium fonts-noto-cjk``)
against the API and its pages served on a real socket, over a real stack (worker, beat, sandboxes)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scenarios.conftest import stack  # noqa: F401 - the running stack, shared with the scenarios
from tests.support.stack import Stack, services_required

CHROMIUM = os.environ.get("MATRIX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
#: Where the key pages' screenshots go: docs/screenshots with MATRIX_UPDATE_SCREENSHOTS=1, else a temp folder.
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """A headless Chromium (the system's; Playwright's own builds are not downloaded)."""
    if not Path(CHROMIUM).exists():
        if services_required():
            pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium fonts-noto-cjk")
        pytest.skip("no Chromium: apt-get install chromium fonts-noto-cjk")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[str]:  # noqa: F811 - the imported fixture
    """The API and its pages on a socket, on the stack's database: the base URL."""
    from channels.sandbox.server import serve_in_thread
    from publisher.interfaces.api import app

    server = serve_in_thread(app)
    yield server.url
    server.stop()


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    """The folder screenshots are written to."""
    if os.environ.get("MATRIX_UPDATE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        return SHOTS
    return tmp_path
