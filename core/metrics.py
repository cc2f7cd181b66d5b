"""Prometheus metrics (prometheus-client): what each process counts, and what the database says at scrape time.

Two kinds of figures, because a worker's counters die with it while the database is the source of truth:

* **Counted where it happens** — platform calls (latency per channel, endpoint and outcome), delivery attempts,
  screenings (latency), token refreshes. Every process of one machine writes them to files under
  ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode; ``matrix up`` and ``matrix worker`` set it
  to ``<data_dir>/metrics`` unless it is set), so the prefork children of a worker and the API are summed
  together; a scrape of any process on that machine reads them all.
* **Read from the source of truth** when scraped — deliveries by channel and state, posts by state, the
  queues' depth — so the figure is the same whichever machine is asked.

``GET /metrics`` on the API serves both (to an admin, or with ``MATRIX_METRICS_TOKEN`` as a bearer token).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Platforms answer in 50 ms to a few seconds; WeChat's uploads take longer.
_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

PLATFORM_SECONDS = Histogram(
    "matrix_platform_request_seconds",
    "Time of one call to a platform's API, by channel, endpoint (ids replaced) and outcome.",
    ["channel", "endpoint", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
DELIVERY_ATTEMPTS = Counter(
    "matrix_delivery_attempts_total", "Delivery attempts by channel and what came of them.", ["channel", "outcome"]
)
SCREENING_SECONDS = Histogram(
    "matrix_screening_seconds",
    "Time to screen one post version (outside any transaction).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0),
)
TOKEN_REFRESHES = Counter("matrix_token_refreshes_total", "Access tokens fetched from a platform.", ["channel"])

_ID = re.compile(r"(?<!^)/\d+(?=/|$)")  # a numeric segment, not the first one (Weibo's API version "/2/")


def endpoint_label(url: str) -> str:
    """A URL as a label: its path only (never the query, where tokens travel), numeric ids as ``:id`` (so a
    label does not grow with every post)."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return _ID.sub("/:id", path)[:120] or "/"


@contextmanager
def timed_platform_call(channel: str, url: str) -> Iterator[dict[str, str]]:
    """Time a platform call; the caller sets ``outcome`` in the yielded dict (default: the exception's name)."""
    start = time.perf_counter()
    result = {"outcome": "ok"}
    try:
        yield result
    except Exception as exc:
        result["outcome"] = exc.__class__.__name__
        raise
    finally:
        PLATFORM_SECONDS.labels(channel, endpoint_label(url), result["outcome"]).observe(time.perf_counter() - start)


def ensure_multiprocess_dir(data_dir: Path) -> str:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` for this process and its children (``<data_dir>/metrics``) unless it is
    set; returns it. Called before the processes that count start (prometheus-client reads it at import)."""
    folder = os.environ.get(MULTIPROC_ENV) or str((data_dir / "metrics").resolve())
    Path(folder).mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = folder
    return folder


class SourceOfTruth:
    """A collector whose figures come from a function called at scrape time (the database, the broker)."""

    def __init__(self, read: Callable[[], list[tuple[str, str, list[str], list[tuple[list[str], float]]]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One gauge family per (name, help, label names, samples) the function returns."""
        for name, doc, labels, samples in self._read():
            family = GaugeMetricFamily(name, doc, labels=labels)
            for values, value in samples:
                family.add_metric(values, value)
            yield family


def _counted() -> CollectorRegistry:
    """A registry of the counted figures: every process's files in multiprocess mode, else this process's."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        for collector in (PLATFORM_SECONDS, DELIVERY_ATTEMPTS, SCREENING_SECONDS, TOKEN_REFRESHES):
            registry.register(collector)
    return registry


def exposition(read: Callable[[], list[tuple[str, str, list[str], list[tuple[list[str], float]]]]] | None) -> bytes:
    """The Prometheus text of this machine's counted figures (every process, in multiprocess mode; else this
    process's) and, with ``read``, the source-of-truth gauges."""
    registry = _counted()
    if read is not None:
        registry.register(SourceOfTruth(read))
    return generate_latest(registry)


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from the network
    """Serve this machine's counted figures on ``host:port`` from a thread (a worker on a machine of its own).
    The counted figures say nothing of anyone's content: no sign-in, like Prometheus' node exporter."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=_counted())
