"""The Celery application that *consumes* tasks: built from the kernel's configuration, with the task code.

Run with ``matrix worker`` / ``matrix beat`` (or ``celery -A workers.app worker``). Producers never import this
module: they send tasks by name through :mod:`core.broker`.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import beat_init, celeryd_init, worker_process_init

import moderation
from core import logredact
from core.broker import celery_config, screening_queue
from core.crypto import check_secret_key
from core.db import get_engine
from core.errors import ConfigError
from core.metrics import serve_worker_metrics
from core.settings import Settings, get_settings
from monitor.queue import celery_config as monitor_celery_config
from monitor.settings import get_monitor_settings
from publisher.services.screening import configure_moderation


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured for ``settings`` (default: the process settings), with the tasks registered."""
    settings = settings or get_settings()
    # A delivery or screening worker never takes the monitor's queue: it does not load the monitor's code either
    # (datasketch, scipy, the feed parser: ~160 MB a process)
    kind = os.environ.get("MATRIX_WORKER_KIND", "all")
    include = ["workers.tasks"] + (["workers.monitor_tasks"] if kind in ("all", "monitor") else [])
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
