"""The monitor's knobs: one typed object read from ``MATRIX_MONITOR_*`` (and ``.env``), built once at the edge.

Library code takes a :class:`MonitorSettings` argument; the tasks and the interfaces build it with
:func:`get_monitor_settings`. Kept apart from :mod:`core.settings` because the kernel knows nothing of the
monitor, and so that the monitor's defaults can change without touching the kernel.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.settings import get_settings


class MonitorSettings(BaseSettings):
    """Every knob of the monitor. Each field maps to ``MATRIX_MONITOR_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MATRIX_MONITOR_", env_file=".env", extra="ignore")

    queue: str = Field(
        "",
        description="Celery queue of the monitor's tasks; default `monitor`, or `<MATRIX_QUEUE>-monitor` when "
        "MATRIX_QUEUE is not the default (installations sharing a broker keep apart).",
    )
    shared_worker: bool = Field(
        True,
        description="`matrix worker` consumes the monitor queue too (the embedded default). Off: run a worker "
        "of its own with `celery -A workers.app worker -Q monitor`, so polling never delays deliveries.",
    )
    poll_interval_s: float = Field(30.0, description="How often beat looks for sources due to be polled.")
    poll_batch: int = Field(100, description="Sources claimed by one beat tick (Miniflux's batch size).")
    default_interval_s: int = Field(3600, description="A new source's polling interval (Miniflux: 60 min).")
    min_interval_s: int = Field(60, description="The shortest interval a source may have.")
    max_backoff_s: float = Field(86_400.0, description="The longest delay after failures or a Retry-After.")
    pause_after: int = Field(5, description="Failures in a row after which a source is paused and its owner told.")
    timeout_s: float = Field(20.0, description="Connect/read timeout of one request (Miniflux: 20 s).")
    deadline_s: float = Field(30.0, description="Longest a whole fetch may take (a trickling server is cut).")
    body_max_bytes: int = Field(5 * 1024 * 1024, description="Largest feed body read (a bigger one is refused).")
    max_redirects: int = Field(3, description="Redirects followed per fetch, each hop checked by the guard.")
    host_concurrency: int = Field(2, description="Requests in flight to one host, over every worker.")
    host_spacing_s: float = Field(0.5, description="Least time between two requests to one host (RSSHub: 0.5 s).")
    items_per_fetch: int = Field(200, description="Entries read from one feed body; the rest are ignored.")
    cluster_threshold: float = Field(0.5, description="Jaccard similarity (char 3-grams) that joins a story.")
    cluster_window_h: float = Field(72.0, description="Items older than this are not joined to new ones.")
    alert_window_h: float = Field(24.0, description="One alert per story per rule within this window.")


@lru_cache(maxsize=1)
def get_monitor_settings() -> MonitorSettings:
    """The process-wide monitor settings (read once; :func:`reset_monitor_settings` forgets them)."""
    return MonitorSettings()


def reset_monitor_settings() -> None:
    """Forget the cached settings (tests and drills that change ``MATRIX_MONITOR_*``)."""
    get_monitor_settings.cache_clear()


def monitor_queue(settings: MonitorSettings | None = None) -> str:
    """The queue the monitor's tasks go to (see :attr:`MonitorSettings.queue`)."""
    explicit = (settings or get_monitor_settings()).queue.strip()
    if explicit:
        return explicit
    base = get_settings().queue
    return "monitor" if base == "matrix" else f"{base}-monitor"
