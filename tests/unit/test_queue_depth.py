"""dispatch_due asks the broker whether our queue is empty before re-sending stale wake-ups."""

from __future__ import annotations

import logging
import uuid

import pytest

from core.settings import Settings
from tests.support.stack import REDIS_URL, require_services
from workers.app import create_app
from workers.tasks import _queue_is_empty


def _check(broker_url: str, caplog: pytest.LogCaptureFixture) -> None:
    queue = f"mm-depth-{uuid.uuid4().hex[:8]}"
    app = create_app(Settings(broker_url=broker_url, queue=queue))
    with caplog.at_level(logging.WARNING, logger="workers.tasks"):
        assert _queue_is_empty(app, queue) is True
    assert "cannot read the queue depth" not in caplog.text  # an empty queue is an answer, not an error
    app.send_task("matrix.dispatch_due", queue=queue)
    try:
        assert _queue_is_empty(app, queue) is False
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)


def test_embedded_broker_queue_depth(tmp_path, caplog) -> None:
    _check(f"sqla+sqlite:///{tmp_path / 'broker.db'}", caplog)


@pytest.mark.services
def test_redis_queue_depth_reads_an_empty_queue_as_empty(caplog) -> None:
    require_services()
    _check(REDIS_URL, caplog)
