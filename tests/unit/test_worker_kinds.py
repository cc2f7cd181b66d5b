"""Queues by the kind of work (issue 12 item 1): screening on a queue of its own, and `matrix worker --kind`
starting the right pool on the right queues (threads and no classifier for deliveries)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.broker import Task, celery_config, screening_queue, status_queue
from core.settings import get_settings
from publisher.interfaces import cli


@pytest.fixture()
def started(env: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "_exec_module", lambda module, *args: calls.append([module, *args]))
    for name in ("MATRIX_WORKER_KIND", "MATRIX_DB_POOL_SIZE", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(name, "")  # the command sets them in this process: put back as they were afterwards
        monkeypatch.delenv(name)
    return calls


def test_screening_has_a_queue_of_its_own() -> None:
    settings = get_settings()
    routes = celery_config(settings)["task_routes"]
    assert routes[Task.SCREEN_VERSION.value] == {"queue": screening_queue(settings)}
    assert Task.DELIVER.value not in routes  # deliveries stay on the default queue
    assert routes[Task.CHECK_DELIVERY.value] == {"queue": status_queue(settings)}  # read first by their workers


@pytest.mark.parametrize(
    ("kind", "queues", "pool"),
    [
        ("all", "matrix-status,matrix,matrix-screening", None),
        ("delivery", "matrix-status,matrix", "threads"),
        ("screening", "matrix-screening", None),
        ("monitor", "monitor", None),
    ],
)
def test_a_worker_of_each_kind_takes_its_queues(
    started: list[list[str]], kind: str, queues: str, pool: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(cli.app, ["worker", "--kind", kind])
    assert result.exit_code == 0, result.output
    argv = started[-1]
    assert argv[argv.index("-Q") + 1] == queues
    assert (argv[argv.index("--pool") + 1] if "--pool" in argv else None) == pool
    if kind == "delivery":
        assert argv[argv.index("-c") + 1] == str(get_settings().delivery_threads)
    assert os.environ["MATRIX_WORKER_KIND"] == kind  # the worker app preloads the classifier for all/screening only


def test_an_unknown_kind_is_one_line_and_starts_nothing(started: list[list[str]]) -> None:
    result = CliRunner().invoke(cli.app, ["worker", "--kind", "nope"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --kind 'nope': choose all, delivery, screening or monitor"
    assert started == []
