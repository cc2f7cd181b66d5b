"""The one exception tree of ``channels``.

::

    ChannelError                      root: anything a platform call can raise
    ├── TransientError                retry later (backoff + jitter, or ``retry_after``)
    │   ├── RateLimited               the platform said "slow down" (429, 45011, 10023 …)
    │   ├── Unavailable               5xx, busy (-1), connection refused before the request was sent
    │   │   └── NotSent               our side failed before the request left (token cache, shared limiter):
    │   │       │                     nothing reached the platform, so it is retried, never taken for a lost answer
    │   │       └── Throttled         our own limiter held the request back (the account's or the IP's pace):
    │   │                             no attempt was made, the delivery waits ``retry_after``
    │   └── QuotaExhausted            a daily quota is spent: the account pauses until ``paused_until``
    ├── OutcomeUnknown                the request went out but the answer was lost: the call may have
    │                                 succeeded, so the delivery becomes ``unconfirmed`` (never blindly retried)
    ├── PermanentError                never retried; ``reason`` is the platform's own words
    │   ├── ContentRejected           the platform refused this content (45166, 20019, 53503 …)
    │   └── InvalidRequest            our request is wrong (bad parameter, missing permission)
    └── NeedsReauth                   the credential is dead: a person must re-authorise the account

Every exception survives pickling (Celery stores them), so each one that carries fields defines
``__reduce__``.
"""

from __future__ import annotations

from datetime import datetime


class ChannelError(Exception):
    """Root of every error raised by a channel adapter."""

    def __init__(self, message: str, *, code: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __reduce__(self):  # keep fields across pickling
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})" if self.code is not None else self.message


def _rebuild(cls: type[ChannelError], message: str, state: dict) -> ChannelError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class TransientError(ChannelError):
    """A failure that may go away: retry with backoff, honouring ``retry_after`` when given."""

    def __init__(self, message: str, *, code: str | int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The platform asked us to slow down."""


class Unavailable(TransientError):
    """The platform is down or busy, or the connection failed before the request was sent."""


class NotSent(Unavailable):
    """Something of ours (the token cache, the shared limiter: Redis or the database) failed before the request
    left: the platform saw nothing, so the attempt is simply retried (no lookup, no grace period)."""


class Throttled(NotSent):
    """Our own shared limiter held the request back: the account's (or the platform's per-IP) pace would have
    made it wait past the limiter's bound. Nothing reached the platform and nothing failed: the caller waits
    ``retry_after`` and tries again, and that wait is no failed attempt (a fan-out waits for the limit instead of
    spending its attempts on it)."""


class QuotaExhausted(TransientError):
    """A quota of the account is spent; the account is paused until ``paused_until`` (aware UTC)."""

    def __init__(self, message: str, *, code: str | int | None = None, paused_until: datetime | None = None) -> None:
        super().__init__(message, code=code)
        self.paused_until = paused_until


class OutcomeUnknown(ChannelError):
    """The request was sent but no answer came back: it may or may not have taken effect."""


class PermanentError(ChannelError):
    """A failure that a retry cannot fix. ``message`` carries the platform's reason."""


class ContentRejected(PermanentError):
    """The platform refused the content itself."""


class InvalidRequest(PermanentError):
    """The request was malformed or not permitted for this account."""


class NeedsReauth(ChannelError):
    """The account's credential is invalid, expired or revoked; a person must re-authorise it."""
