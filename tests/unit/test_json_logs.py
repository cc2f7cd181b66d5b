"""JSON log lines (``MATRIX_LOG_FORMAT=json``): valid JSON, the bound ids, per thread, and no secret in them."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from core import logredact, logs
from core.settings import reset_settings


@pytest.fixture()
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logredact.install()  # as every process of ours does first
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("test.json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logs.use_json([logger])
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_bound_ids_and_no_secret(captured) -> None:
    logger, stream = captured
    secret = "wx-secret-token-0123456789"
    with logs.bind(task_id="t-1", task_name="matrix.deliver", delivery_id=812, post_id=97):
        logger.warning("calling https://api.example/cgi-bin/draft/add?access_token=%s failed\nnext line", secret)
    (line,) = _lines(stream)
    assert line["level"] == "WARNING" and line["logger"] == "test.json_logs"
    assert line["delivery_id"] == 812 and line["post_id"] == 97
    assert line["task_id"] == "t-1" and line["task_name"] == "matrix.deliver"
    assert line["ts"].endswith("Z") and ":" in line["worker"]
    assert "access_token=***" in line["message"] and "next line" in line["message"]
    assert secret not in stream.getvalue()


def test_an_exception_is_one_field_redacted_and_ids_outside_a_block_are_gone(captured) -> None:
    logger, stream = captured
    with logs.bind(delivery_id=5):
        try:
            raise RuntimeError("POST /token {'secret': 'hunter2-hunter2'}")
        except RuntimeError:
            logger.exception("boom")
    logger.info("after", extra={"post_id": 3})  # extra= on one call is a field too
    first, second = _lines(stream)
    assert "RuntimeError" in first["exc"] and "hunter2" not in stream.getvalue()
    assert first["delivery_id"] == 5
    assert "delivery_id" not in second and second["post_id"] == 3


def test_each_thread_logs_its_own_ids(captured) -> None:
    """A delivery worker runs many tasks at once in threads: one thread's ids never reach another's lines."""
    logger, stream = captured
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        with logs.bind(delivery_id=n):
            barrier.wait()  # every thread bound before any logs
            logger.info("delivery %d", n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = _lines(stream)
    assert len(lines) == 8
    assert all(line["message"] == f"delivery {line['delivery_id']}" for line in lines)


def test_the_task_signals_bind_the_task_s_ids_and_undo_them(env, monkeypatch) -> None:
    monkeypatch.setenv("MATRIX_LOG_FORMAT", "json")
    reset_settings()
    from celery.signals import task_postrun, task_prerun

    from workers import tasks

    task = tasks.deliver
    task_prerun.send(sender=task, task_id="abc", task=task, args=(4242,), kwargs={})
    bound = logs.current()
    task_postrun.send(sender=task, task_id="abc", task=task, args=(4242,), kwargs={}, retval="skipped")
    assert bound["delivery_id"] == 4242 and bound["task_name"] == "matrix.deliver" and bound["task_id"] == "abc"
    assert "post_id" not in bound  # no such delivery: left out, not a failure
    assert logs.current() == {}


def test_the_setting_takes_only_text_or_json(monkeypatch) -> None:
    from pydantic import ValidationError

    from core.settings import Settings

    assert Settings().log_format == "text"
    monkeypatch.setenv("MATRIX_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        Settings()
