"""The monitor's errors: one root, transient apart from permanent.

::

    MonitorError (core.errors.MatrixError)   a one-line reason fit for a source's ``last_error``
    ├── FetchError          the fetch did not give a body: refused address, too big, too slow, HTTP error
    │   └── RetryLater          transient: 429/5xx, a timeout; ``retry_after`` seconds if known
    │       └── HostBusy            the host's concurrency or spacing is used up: no failure of the source
    ├── FeedError           the body is not a feed we accept: malformed, entity declarations, undecodable
    └── AlertError          an alert channel did not take a message (:mod:`monitor.alerting`)
        ├── AlertRetry          transient: rate limited, busy, unreachable; ``retry_after`` seconds if known
        ├── AlertConfigError    the channel's configuration is refused (webhook, signature, keyword, login):
        │                       the channel is marked broken and its owner told
        └── AlertRefused        this message is refused (too long, malformed): it fails alone

Service errors (unknown source, bad query, no permission) are :mod:`core.errors` as everywhere else.
"""

from __future__ import annotations

from core.errors import MatrixError


class MonitorError(MatrixError):
    """Root of the monitor's fetch and parse errors."""

    status_code = 422


class FetchError(MonitorError):
    """The fetch gave no usable body (permanent until the source changes: a 404, a refused address…)."""


class RetryLater(FetchError):
    """A transient failure: try again after ``retry_after`` seconds (None: the backoff decides)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):  # keep retry_after across pickling (Celery stores exceptions)
        return (_rebuild_retry, (str(self), self.retry_after))


def _rebuild_retry(message: str, retry_after: float | None) -> RetryLater:
    return RetryLater(message, retry_after=retry_after)


class HostBusy(RetryLater):
    """The host has its fill of requests now; the source is tried again soon, with no failure counted."""

    def __reduce__(self):
        return (HostBusy, (str(self),), {"retry_after": self.retry_after})


class FeedError(MonitorError):
    """The body is not a feed we accept; the message says why (malformed, entity declarations, encoding…)."""


class AlertError(MonitorError):
    """Root of what an alert channel's platform answered when it did not take a message."""


class AlertRetry(AlertError):
    """Transient: try again after ``retry_after`` seconds (None: the backoff decides)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):  # keep retry_after across pickling (Celery stores exceptions)
        return (AlertRetry, (str(self),), {"retry_after": self.retry_after})


class AlertConfigError(AlertError):
    """The channel's configuration is refused: nothing more goes to it until it is fixed."""


class AlertRefused(AlertError):
    """This one message is refused by the platform; others may still go."""
