"""The Celery application that *consumes* tasks: built from the kernel's configuration, with the task code.

Run with ``matrix worker`` / ``matrix beat`` (or ``celery -A workers.app worker``). Producers never import this
module: they send tasks by name through :mod:`core.broker`.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    beat_init,
    celeryd_init,
    task_postrun,
    task_prerun,
    worker_process_init,
)
from sqlalchemy import select

import moderation
from core import logredact, logs
from core.broker import Task, celery_config, screening_queue
from core.crypto import check_secret_key
from core.db import get_engine, session_scope
from core.errors import ConfigError
from core.metrics import serve_worker_metrics
from core.settings import Settings, get_settings
from monitor.queue import celery_config as monitor_celery_config
from monitor.settings import get_monitor_settings
from publisher.domain.models import Delivery, PostVersion
from publisher.services.screening import configure_moderation


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured for ``settings`` (default: the process settings), with the tasks registered."""
    settings = settings or get_settings()
    # A delivery or screening worker never takes the monitor's queue: it does not load the monitor's code either
    # (datasketch, scipy, the feed parser: ~160 MB a process)
    kind = os.environ.get("MATRIX_WORKER_KIND", "all")
    include = ["workers.tasks", "workers.rescreen_tasks"]
    include += ["workers.monitor_tasks"] if kind in ("all", "monitor") else []
    app = Celery("matrix", broker=settings.broker_url, include=include)
    app.conf.update(celery_config(settings))
    monitor = monitor_celery_config(get_monitor_settings())  # the monitor's tasks on its own queue, and its poller
    app.conf.task_routes = {**app.conf.task_routes, **monitor["task_routes"]}
    app.conf.beat_schedule = {**app.conf.beat_schedule, **monitor["beat_schedule"]}
    return app


# First, before Celery sets up its logging: every record of this process (and of the pool's children, which
# inherit it) is redacted, whichever handler Celery installs later.
logredact.install()
celery_app = create_app()
QUEUE = get_settings().queue
SCREENING_QUEUE = screening_queue(get_settings())
# What this worker takes (`matrix worker --kind`): all (the embedded default's one worker), delivery (threads,
# no classifier), screening (prefork, the classifier loaded) or monitor.
KIND = os.environ.get("MATRIX_WORKER_KIND", "all")


@celeryd_init.connect
@beat_init.connect
def _refuse_weak_secret_key(**_kwargs) -> None:
    # `celery -A workers.app worker|beat` started without `matrix worker|beat` is refused too: outside the
    # embedded default no worker may decrypt credentials with a missing, public or short key. SystemExit, not
    # the ConfigError: Celery logs and ignores a receiver's exceptions, and the process would start anyway.
    try:
        check_secret_key(get_settings())
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    # Pooled DB connections must not cross a fork into the worker's child processes.
    get_engine().dispose(close=False)
    if KIND not in ("all", "screening"):
        return  # a delivery or monitor worker never loads the classifier (the monitor's scoring loads it lazily)
    # Build the moderation engine (lexicons, and the classifier unless switched off) before the first task,
    # so no screening waits for it.
    configure_moderation(get_settings())
    moderation.get_screener().classifier  # noqa: B018 - loads as a side effect


@celeryd_init.connect
def _serve_metrics(**_kwargs) -> None:
    # On a machine of its own a worker serves what its pool counted (platform latency, attempts, screening,
    # token refreshes) for Prometheus to scrape: MATRIX_WORKER_METRICS_PORT (0: not served; on one machine with
    # the API, GET /metrics there sums the same files).
    port = get_settings().worker_metrics_port
    if port:
        serve_worker_metrics(port)


# -- structured logs (MATRIX_LOG_FORMAT=json, core.logs) ------------------------------------------------------------

# The first argument of these tasks names what they work on: a line logged inside one carries its id.
_TASK_ID_ARG = {
    Task.DELIVER.value: "delivery_id",
    Task.RETRACT_DELIVERY.value: "delivery_id",
    Task.SCREEN_VERSION.value: "version_id",
}
_log_tokens: dict[str, object] = {}  # task id -> its binding, undone after the task (threads run tasks at once)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _json_logs(logger=None, **_kwargs) -> None:
    # Celery installs its handlers (and their formatters) after start-up: replace the formatters then.
    if get_settings().log_format == "json" and logger is not None:
        logs.use_json([logger])


@task_prerun.connect
def _bind_task_ids(task_id=None, task=None, args=None, **_kwargs) -> None:
    name = getattr(task, "name", None)
    ids: dict[str, object] = {"task_id": task_id, "task_name": name}
    field = _TASK_ID_ARG.get(name or "")
    if field and args and get_settings().log_format == "json":
        ids[field] = args[0]
        ids["post_id"] = _post_of(field, args[0])
    if task_id:
        _log_tokens[task_id] = logs.bind_until_reset(**ids)


@task_postrun.connect
def _unbind_task_ids(task_id=None, **_kwargs) -> None:
    token = _log_tokens.pop(task_id, None) if task_id else None
    if token is not None:
        logs.reset(token)


def _post_of(field: str, row_id: object) -> int | None:
    # One indexed read per task, only when JSON logs are on; a database that is down leaves the post id out (the
    # task itself then reports the outage), it never fails the task.
    model = Delivery if field == "delivery_id" else PostVersion
    try:
        with session_scope() as s:
            return s.scalar(select(model.post_id).where(model.id == row_id))
    except Exception:
        return None
