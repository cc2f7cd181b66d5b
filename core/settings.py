"""Settings: one typed object, read from ``MATRIX_*`` environment variables and ``.env``.

The defaults need no server at all (the *embedded default*): a SQLite database and a persistent
SQLite-backed Celery broker, both under ``MATRIX_DATA_DIR``. Production sets
``MATRIX_DATABASE_URL=postgresql+psycopg://…`` and ``MATRIX_BROKER_URL=redis://…``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the system. Each field maps to ``MATRIX_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MATRIX_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("./var"), description="Where the embedded database, broker and caches live.")
    database_url: str = Field("", description="SQLAlchemy URL; default: SQLite file under data_dir.")
    broker_url: str = Field("", description="Celery broker; default: SQLite-backed kombu transport under data_dir.")
    result_backend: str = Field("", description="Celery result backend; default: none (the database is the truth).")
    timezone: str = Field("Asia/Shanghai", description="Times are stored in UTC, shown and parsed in this zone.")
    secret_key: str = Field(
        "",
        description="Encrypts credentials and cached tokens at rest (keys derived from it with HKDF). Required, "
        "32+ characters, outside the embedded default; unset there, a random key kept in data_dir/secret.key.",
    )
    worker_metrics_port: int = Field(
        0, description="A worker on a machine of its own serves its counted metrics here (0: not served)."
    )
    metrics_token: str = Field(
        "",
        description="A bearer token Prometheus scrapes GET /metrics with (32+ characters); unset: only an admin's "
        "credential reads /metrics.",
    )
    old_secret_keys: str = Field(
        "",
        description="Comma-separated earlier secret keys, still accepted for decryption until "
        "`matrix secrets rotate` has re-encrypted everything with secret_key.",
    )
    cookie_secure: bool = Field(
        False, description="Mark the sign-in cookie Secure even on plain HTTP (behind a TLS-terminating proxy)."
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = Field(8100, description="Port of the platform sandboxes started by `matrix up`.")
    outbound_allow: str = Field(
        "",
        description="Comma-separated hosts (host, host:port) or networks that outbound requests may reach although "
        "they are not public (loopback, private, link-local); default: the sandbox address on the embedded demo, "
        "nothing elsewhere; `none`: nothing even there.",
    )
    dispatch_interval_s: float = Field(15.0, description="How often beat looks for due schedules.")
    reconcile_interval_s: float = Field(30.0, description="How often beat resolves stuck deliveries.")
    metrics_interval_s: float = Field(300.0, description="How often beat collects engagement metrics.")
    rescreen_days: int = Field(
        7,
        ge=1,
        le=3650,
        description="Live posts published this many days back are "
        "screened again when the lexicon, an organisation's lists or the model change.",
    )
    rescreen_interval_s: float = Field(60.0, description="How often beat looks for live posts to screen again.")
    rescreen_batch: int = Field(
        20, ge=1, le=500, description="Posts one re-screening task takes: a new screening waits for at most one batch."
    )
    stuck_after_s: float = Field(
        300.0,
        description="A delivery in `sending` longer than this is reconciled (presumed orphaned and looked up). "
        "Keep it above the longest attempt (its platform calls, each up to MATRIX_HTTP_TIMEOUT_S): a live slow "
        "attempt looked up before it noted its submit would be sent a second time.",
    )
    requeue_after_s: float = Field(60.0, description="A queued delivery not yet claimed is queued again after this.")
    status_poll_s: float = Field(
        2.0,
        gt=0,
        description="First look at a delivery an asynchronous platform accepted (WeChat, Toutiao), then twice as "
        "long each time up to the reconcile interval; reconcile looks at whatever these looks leave.",
    )
    max_attempts: int = Field(6, description="Transient failures retried this many times before `failed`.")
    retract_max_attempts: int = Field(
        12, description="A retraction's transient failures retried this many times before `retract_failed`."
    )
    retry_base_s: float = Field(2.0, description="First retry delay; doubles each attempt, with jitter.")
    retry_max_s: float = Field(600.0, description="Upper bound of one retry delay.")
    http_timeout_s: float = 20.0
    db_busy_timeout_s: float = Field(
        30.0,
        description="SQLite: how long a transaction waits for another's write lock before 'database is locked' "
        "(the API then answers 503 with Retry-After). Transactions are kept short, so this is rarely reached.",
    )
    body_max_chars: int = Field(200_000, description="Largest post body accepted.")
    # Screening time grows with the text's length, about 0.5 ms a character with the classifier on 2 cores
    # (2,000 characters 1.1 s, 20,000 10.6 s; a 1,000,000-character text took 834 s and 1.6 GB): `POST /screen`
    # is for a passage, and whole posts are screened by the workers.
    screen_max_chars: int = Field(10_000, description="Longest text `POST /screen` accepts.")
    api_body_max_bytes: int = Field(
        1_000_000,
        description="Largest request body the API reads, refused with 413 before it is read; routes that take "
        "a post or a text to screen have their own caps derived from body_max_chars / screen_max_chars.",
    )
    require_review: bool = Field(False, description="先审后发: every post needs a person's approval, even on pass.")
    moderation_classifier: bool = Field(True, description="Use the transformer classifier (off: rules only).")
    moderation_base_model: str = Field("", description="HF encoder directory to use instead of bundled e5-small.")
    moderation_model_dir: str = Field("", description="Trained classifier directory; default: the shipped one.")
    model_cache_dir: Path = Field(
        Path("~/.cache/media-matrix"),
        description="Where converted encoder models are cached (the e5-small conversion, ~470 MB).",
    )
    worker_concurrency: int = 2
    delivery_threads: int = Field(
        32, description="Threads of a delivery worker (`matrix worker --kind delivery`): deliveries in flight at once."
    )
    delivery_batch: int = Field(
        8,
        ge=1,
        le=64,
        description="Deliveries of a fan-out one task claims in one transaction, sends side by side and records in "
        "one transaction (1: one task a delivery). Each worker thread then has up to this many in flight.",
    )
    db_pool_size: int = Field(5, description="Database connections a process keeps (PostgreSQL); a delivery worker "
                              "raises it to its thread count.")  # fmt: skip
    clock_offset_s: float = Field(
        0.0, description="Shifts the service's clock (drills against a sandbox's fake clock). Keep 0 in production."
    )
    queue: str = Field("matrix", description="Celery queue name (lets several installations share one broker).")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Workers' log lines: text (for a terminal) or json (one object a line with the task, delivery "
        "and post ids, for a log pipeline; core.logs).",
    )

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'matrix.db').resolve()}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"
        ZoneInfo(self.timezone)  # fail early on a bad zone name
        return self

    @property
    def embedded(self) -> bool:
        """The embedded default (the demo): a SQLite database *and* the SQLite broker, both on this machine."""
        return self.database_url.startswith("sqlite") and self.broker_url.startswith("sqla+sqlite")

    @property
    def tz(self) -> ZoneInfo:
        """The display/parse time zone."""
        return ZoneInfo(self.timezone)

    @property
    def sandbox_url(self) -> str:
        """Where the platform sandboxes answer (``{sandbox}`` in demo account configs)."""
        return f"http://{self.sandbox_host}:{self.sandbox_port}"


def settings_problem(exc: ValidationError) -> str:
    """One line naming each environment variable that failed validation and why, without its value (it may be
    a secret): ``MATRIX_DELIVERY_BATCH: Input should be greater than or equal to 1``."""
    parts = []
    for error in exc.errors():
        name = "MATRIX_" + str(error["loc"][0]).upper() if error.get("loc") else "settings"
        parts.append(f"{name}: {error['msg']}")
    return "bad setting " + "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (see :func:`reset_settings`)."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


def reset_settings() -> None:
    """Forget the cached settings, so the next :func:`get_settings` reads the environment again.

    For processes (tests, drills) that change ``MATRIX_*`` variables after start-up.
    """
    get_settings.cache_clear()
