"""The monitor's knobs: one typed object read from ``MATRIX_MONITOR_*`` (and ``.env``), built once at the edge.

Library code takes a :class:`MonitorSettings` argument; the tasks and the interfaces build it with
:func:`get_monitor_settings`. Kept apart from :mod:`core.settings` because the kernel knows nothing of the
monitor, and so that the monitor's defaults can change without touching the kernel.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
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
    host_limits: str = Field(
        "",
        description="Hosts with limits of their own, `host[:port]=concurrency/spacing_s` separated by commas "
        "(`rsshub.internal:1200=8/0`): an installation's own RSSHub or the feed sandbox, which may take more "
        "than a stranger's server. Every host not named keeps host_concurrency and host_spacing_s.",
    )
    poll_chunk: int = Field(
        25, description="Sources polled by one task (fetched concurrently, scored in one batch, stored in one go)."
    )
    poll_threads: int = Field(8, description="Fetches in flight in one poll of many sources, over all hosts.")
    poll_budget_s: float = Field(
        120.0,
        description="How long a poll of many sources starts new fetches; the sources it did not reach are deferred "
        "(polled again in seconds), so a task of slow hosts ends within Celery's time limit.",
    )
    items_per_fetch: int = Field(200, description="Entries read from one feed body; the rest are ignored.")
    cluster_threshold: float = Field(0.5, description="Jaccard similarity (char 3-grams) that joins a story.")
    screen_gate: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Items screened by the transformer only when a rule hits or the char n-gram scorer gives a "
        "category at least this (most feed items are harmless; 0: every item through the transformer).",
    )
    cluster_window_h: float = Field(72.0, description="Items older than this are not joined to new ones.")
    alert_window_h: float = Field(24.0, description="One alert per story per rule within this window.")
    burst_interval_s: float = Field(300.0, description="How often beat looks for bursts in the current hour.")
    burst_history_h: int = Field(24, description="Hours of baseline before the hour that is judged.")
    burst_alpha: float = Field(0.3, description="EWMA weight of the newest baseline hour.")
    burst_z: float = Field(3.0, description="z-score over the baseline from which an hour is a burst.")
    burst_min_count: int = Field(5, description="Fewest items in an hour for a burst.")
    burst_min_std: float = Field(1.0, description="Floor of the baseline's standard deviation (quiet keys).")
    burst_cooldown_h: int = Field(6, description="No second burst for one key within these hours.")
    burst_min_history_h: int = Field(6, description="Hours of items behind the monitor before rules and needs burst.")
    alert_send_interval_s: float = Field(
        10.0, description="How often beat looks for alert sends that are due (after quiet hours, a retry)."
    )
    alert_max_attempts: int = Field(8, description="Tries of one alert on one channel before it is failed.")
    alert_text_chars: int = Field(
        5000, description="Characters of the item's text an alert carries (the rest is named, with the link)."
    )
    alert_timeout_s: float = Field(10.0, description="Connect/read timeout of one robot or SMTP request.")
    alert_max_wait_s: float = Field(
        10.0, description="Longest a worker waits for a robot's next slot (20/min: 3 s apart) before rescheduling."
    )
    comments_interval_s: int = Field(900, description="A new comments source's polling interval.")
    comments_days: int = Field(
        14, description="Comments are read on the posts published within this many days (older ones are left)."
    )
    comments_per_post: int = Field(500, description="Comments read per post in one poll (the rest come next poll).")
    comments_posts_max: int = Field(200, description="Posts one comments source reads in one poll, newest first.")
    report_font: str = Field(
        "",
        description="A CJK TrueType/OpenType font (.ttf, .otf, .ttc) for the daily report's PDF; default: Noto "
        "Sans CJK where fonts-noto-cjk installed it. None found: the PDF is refused, the HTML still works.",
    )
    report_font_index: int = Field(2, description="The face in a .ttc collection (Noto Sans CJK: 2 is SC).")
    report_base_url: str = Field(
        "http://127.0.0.1:8000", description="The API's public address: robots get a link to the report page."
    )
    report_send_interval_s: float = Field(60.0, description="How often beat looks for daily reports due.")

    @field_validator("host_limits")
    @classmethod
    def _check_host_limits(cls, value: str) -> str:
        parse_host_limits(value)  # a typo fails at start-up, not at the first fetch
        return value

    def host_limits_parsed(self) -> dict[str, tuple[int, float]]:
        """``host_limits`` as ``{host: (concurrency, spacing_s)}``."""
        return parse_host_limits(self.host_limits)


def parse_host_limits(value: str) -> dict[str, tuple[int, float]]:
    """``"a:1200=8/0, b=4/0.25"`` as ``{"a:1200": (8, 0.0), "b": (4, 0.25)}``; ValueError naming a bad part."""
    limits: dict[str, tuple[int, float]] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        host, eq, rest = part.partition("=")
        concurrency, slash, spacing = rest.partition("/")
        try:
            parsed = (int(concurrency), float(spacing))
        except ValueError:
            parsed = (0, -1.0)
        if not eq or not slash or not host.strip() or parsed[0] < 1 or parsed[1] < 0:
            raise ValueError(f"host_limits: {part!r} is not host[:port]=concurrency/spacing_s (e.g. rsshub:1200=8/0)")
        limits[host.strip().lower()] = parsed
    return limits


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
