"""The channel contract: one small base class per platform adapter, a registry, one HTTP client factory.

An adapter turns a post into a platform's own protocol. The base class owns the HTTP call: it applies
throttling, sends the request, maps transport failures to the exception tree in :mod:`channels.errors`,
and maps error replies to it too, from the adapter's tables. Subclasses build requests and parse replies.
Adapters never touch the database: what they need arrives in a :class:`DeliveryContext`, and every
remote id they obtain is handed to ``ctx.save_progress`` *before* the next call, so a crash between two
calls never loses an id (the caller persists it at once).

Error replies (:meth:`Channel._check`), driven by class attributes an adapter sets::

    3xx ──────────────────────────► InvalidRequest (redirects are never followed: the address is wrong)
    body envelope (ERROR_BODY_ON: "success" | "error" | "any" replies carry it)
        code under ERROR_CODE_KEYS, text under ERROR_MESSAGE_KEYS; 0 / absent = no error
        ──► ERROR_MAP[code]      unknown code: Unavailable on 5xx, else InvalidRequest
    4xx / 5xx without a code ─────► STATUS_MAP[status], else HTTP's meaning: 429 RateLimited,
                                    5xx Unavailable, other 4xx InvalidRequest

Every transient error gets the reply's ``Retry-After`` (seconds or an HTTP date) as ``retry_after``;
:class:`QuotaExhausted` gets ``paused_until`` = the next midnight in the platform's ``quota_timezone``.
Where a platform's envelope genuinely differs, the adapter overrides one small hook
(:meth:`Channel._error_fields`, :meth:`Channel._redirect_error`, :meth:`Channel._retry_after`), never
the whole mapping.

Throttling: before every request the account's pace (``rate_per_second`` on ``<kind>:<account id>``) and,
where the platform limits calls per server IP, its ``ip_limit`` (on ``<kind>:ip``) are taken from the
limiter (shared by every worker in production). A wait longer than the limiter's bound raises
:class:`Throttled` (nothing was sent; the caller waits ``retry_after``). The per-account posting limit
(``posts_per_hour``) is counted by the publisher when it claims a delivery, under the account's row lock.

A channel closes the HTTP client it made itself (``with make(...) as channel:`` or :meth:`Channel.close`);
a client passed in belongs to whoever passed it, who closes it.
"""

from __future__ import annotations

import importlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any, ClassVar, Literal, Protocol, Self
from urllib.parse import urlsplit

import httpx

from channels.errors import (
    ChannelError,
    InvalidRequest,
    NotSent,
    OutcomeUnknown,
    QuotaExhausted,
    RateLimited,
    Throttled,
    TransientError,
    Unavailable,
)
from channels.media import ImageType, decode_data_uri, sniff_image
from core.http import USER_AGENT, AddressPolicy, OutboundRefused, fetch, guarded_client, safe_url
from core.metrics import timed_platform_call

IMAGE_MAX_REDIRECTS = 3  # image hosts and CDNs often redirect once; more is a loop or a tracker chain

# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class PostContent:
    """One immutable version of a post, as the editor wrote it (Markdown body)."""

    title: str
    body: str
    summary: str = ""
    cover_url: str | None = None
    author: str = ""


@dataclass(frozen=True)
class AccountInfo:
    """What an adapter knows of the account it acts for (credentials already decrypted)."""

    id: int
    kind: str
    name: str
    credentials: Mapping[str, Any]
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    """A post rendered for one platform, within its limits."""

    title: str
    html: str
    text: str
    summary: str
    cover_url: str | None = None
    images: tuple[str, ...] = ()


@dataclass
class DeliveryContext:
    """Everything one delivery needs; ``progress`` holds remote ids saved by earlier attempts."""

    delivery_id: int
    idempotency_key: str
    content: PostContent
    progress: dict[str, Any] = field(default_factory=dict)
    remote_id: str | None = None
    remote_url: str | None = None
    depends_on_url: str | None = None
    save_progress: Callable[[dict[str, Any]], None] = lambda _update: None

    def save(self, **update: Any) -> None:
        """Record remote ids *now*: merged into ``progress`` and persisted by the caller before returning."""
        self.progress.update(update)
        self.save_progress(dict(update))


@dataclass(frozen=True)
class PublishResult:
    """The outcome of ``publish`` or ``lookup``.

    ``state`` is ``published`` (live, ``url`` known) or ``awaiting_confirmation`` (accepted by an
    asynchronous platform; ``status`` is polled until it settles) or ``awaiting_manual`` (an operator
    must post it by hand and record the URL).
    """

    remote_id: str
    state: str = "published"
    url: str | None = None


@dataclass(frozen=True)
class StatusResult:
    """The platform's current view of a delivery: pending | published | failed | retracted."""

    state: str
    url: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Metrics:
    """Engagement numbers; ``None`` where the platform does not report one."""

    reads: int | None = None
    likes: int | None = None
    shares: int | None = None
    comments: int | None = None


@dataclass(frozen=True)
class Comment:
    """One reader's comment on a post of ours, as the platform returned it.

    ``id`` is the platform's own id (unique per platform, or per site / article where the adapter says so in
    ``guid``); ``guid`` a stable key for the comment across polls (``weibo:comment:<id>``…); ``link`` the post's
    page (with the comment's anchor where the platform has one); ``created_at`` aware UTC, ``None`` if unknown.
    """

    id: str
    guid: str
    text: str
    author: str = ""
    created_at: datetime | None = None
    link: str = ""


@dataclass(frozen=True)
class CommentBatch:
    """What one ``comments`` call found: the comments newer than the cursor it was given, the cursor to give
    next time (JSON-safe; the caller stores it), and ``gone`` when the post no longer exists on the platform
    (no more comments will come: the caller stops asking)."""

    comments: list[Comment]
    cursor: dict[str, Any]
    gone: bool = False


# --------------------------------------------------------------------------------------- throttle


class Limiter(Protocol):
    """Shared rate limiting: raise :class:`RateLimited` (with ``retry_after``) instead of waiting long."""

    def acquire(self, key: str, per_second: float, burst: int = 1) -> None: ...


class LocalLimiter:
    """In-process spacing of calls per key; the publisher injects a cross-process limiter in workers."""

    def __init__(self, max_wait_s: float = 5.0) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._max_wait = max_wait_s

    def acquire(self, key: str, per_second: float, burst: int = 1) -> None:
        if per_second <= 0:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next.get(key, now))
            wait = max(0.0, at - (max(1, burst) - 1) / per_second - now)  # GCRA, as core.ratelimit
            if wait > self._max_wait:
                raise RateLimited(f"local rate limit for {key}", retry_after=wait)
            self._next[key] = at + 1.0 / per_second
        if wait > 0:
            time.sleep(wait)


# ------------------------------------------------------------------------------------ http factory


def make_client(
    base_url: str = "",
    *,
    timeout: float = 20.0,
    max_redirects: int | None = None,
    policy: AddressPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The one place that makes the adapters' HTTP clients: :func:`core.http.guarded_client` (only public
    addresses or the allow-list are reached, whatever an account's config or a post's images say), timeouts,
    User-Agent, no implicit redirects.

    ``max_redirects``: follow up to that many redirects, each checked again (downloads of images, which CDNs
    redirect); by default none are followed, because an API that redirects means a wrong address in the
    config. ``transport``: a test's ``httpx.MockTransport`` instead of the network (then nothing is guarded).
    """
    if transport is not None:
        return httpx.Client(
            base_url=base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=bool(max_redirects),
            max_redirects=max_redirects or 0,
        )
    # connections kept alive across the adapters of a process (one per delivery): core.http.shared_transport
    return guarded_client(base_url, policy=policy, timeout=timeout, max_redirects=max_redirects or 0, shared=True)


# ------------------------------------------------------------------------------------ error replies

ErrorCode = int | str
"""A platform's error code: a number (WeChat, Weibo, Toutiao) or a name (WordPress ``rest_…``)."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds from ``now``: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    ``None`` when absent or unreadable; a date in the past gives 0. HTTP dates are parsed by the standard
    library's ``email.utils`` (it reads the IMF-fixdate and both obsolete forms HTTP allows).
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": HTTP dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def as_error_code(value: Any) -> ErrorCode | None:
    """A code as a platform sent it, normalised: numbers (also ``"20019"``) as int, names as str; ``None``
    for an absent or empty one. Codes are compared with :attr:`Channel.ERROR_MAP`'s keys in this form."""
    if value is None:
        return None
    if isinstance(value, int):
        return int(value)  # bool too (JSON true), as int() reads it
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text or None


def http_status_class(status: int) -> type[ChannelError]:
    """What an HTTP error status means when a platform's tables say nothing more."""
    if status == 429:
        return RateLimited
    return Unavailable if status >= 500 else InvalidRequest


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # not JSON, or not UTF-8
        return None


def image_bytes(
    client: httpx.Client,
    url: str,
    *,
    what: str,
    max_bytes: int,
    max_redirects: int = IMAGE_MAX_REDIRECTS,
    deadline_s: float = 60.0,
) -> bytes:
    """The bytes at an image's address: an http(s) URL fetched by ``client`` (a guarded one: public addresses
    or the allow-list only, each redirect hop checked again) or a ``data:`` URI; at most ``max_bytes``.

    What the bytes are is the caller's to judge. Raises :class:`InvalidRequest` (refused, a bad address, an
    HTTP 4xx) or :class:`Unavailable` (unreachable, 5xx, 429: worth trying later); the messages name ``what``
    and the URL without its query, never what the address answered.
    """
    shown = f"{what} {safe_url(url)}" if url[:5].lower() != "data:" else what
    if url[:5].lower() == "data:":
        try:
            data, _ = decode_data_uri(url)
        except ValueError:  # binascii.Error (bad base64) is one
            raise InvalidRequest(f"{what} is not a valid data: URI") from None
        if len(data) > max_bytes:
            raise InvalidRequest(f"{shown} is {len(data):,} bytes; at most {max_bytes:,}")
        return data
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise InvalidRequest(f"{what} must be an http(s) URL, not {url[:80]!r}")
    try:
        got = fetch(client, url, max_bytes=max_bytes, max_redirects=max_redirects, deadline_s=deadline_s)
    except OutboundRefused as exc:
        raise InvalidRequest(f"{what}: {exc}") from None
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot download {shown}: {exc.__class__.__name__}") from exc
    if got.status >= 500 or got.status == 429:
        raise Unavailable(
            f"{shown} answered HTTP {got.status}",
            code=got.status,
            retry_after=parse_retry_after(got.headers.get("retry-after")),
        )
    if not 200 <= got.status < 300:
        raise InvalidRequest(f"{shown} cannot be downloaded: HTTP {got.status}", code=got.status)
    return got.content


# ------------------------------------------------------------------------------------------ base


class Channel:
    """Base class of every platform adapter.

    Subclasses set the class attributes that describe the platform and implement the operations.
    ``render`` is pure. Every network call goes through :meth:`request`, which throttles, translates
    transport errors and maps error replies from the tables below (see the module docstring).
    """

    kind: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    # the keys of the credentials object (what a re-authorisation form asks for; the values are never shown)
    credential_fields: ClassVar[tuple[str, ...]] = ()
    title_maxlen: ClassVar[int] = 100
    summary_maxlen: ClassVar[int] = 200
    body_maxlen: ClassVar[int] = 100_000
    rate_per_second: ClassVar[float] = 5.0  # our own spacing of calls per account
    posts_per_hour: ClassVar[int | None] = None  # the platform's per-account posting limit, enforced by us
    # The platform's limit on calls from one server IP, as (calls, per seconds), over all accounts: held on one
    # shared key per platform (``<kind>:ip``), since our workers are taken to leave through one address (a NAT,
    # the usual deployment; workers with addresses of their own then share it too, which errs on the safe side).
    ip_limit: ClassVar[tuple[int, float] | None] = None
    asynchronous: ClassVar[bool] = False  # publish returns awaiting_confirmation; status() settles it
    supports_retract: ClassVar[bool] = True
    supports_metrics: ClassVar[bool] = True
    supports_comments: ClassVar[bool] = False  # comments() reads readers' comments on our published posts
    needs_website_link: ClassVar[bool] = False  # a delivery waits for the post's website delivery URL
    quota_timezone: ClassVar[tzinfo] = UTC  # where the platform's day (and its daily quotas) ends

    # -- how the platform says "error": read by _check -------------------------------------------

    ERROR_MAP: ClassVar[Mapping[ErrorCode, type[ChannelError]]] = {}
    """The platform's own error codes (in the reply body) → exception class. Every entry has a contract case."""
    STATUS_MAP: ClassVar[Mapping[int, type[ChannelError]]] = {}
    """HTTP statuses whose meaning on this platform differs from :func:`http_status_class` (or is worth
    stating), for error replies whose body names no code of ``ERROR_MAP``."""
    ERROR_CODE_KEYS: ClassVar[tuple[str, ...]] = ()
    """The envelope's JSON keys that hold the code; the first key present counts (its value 0: no error)."""
    ERROR_MESSAGE_KEYS: ClassVar[tuple[str, ...]] = ()
    """The envelope's JSON keys that hold the platform's words; the first non-empty one counts."""
    ERROR_BODY_ON: ClassVar[Literal["success", "error", "any"]] = "error"
    """Which replies carry the envelope: ``success`` (HTTP 2xx; an HTTP error status decides by itself),
    ``error`` (HTTP 4xx/5xx) or ``any``."""

    def __init__(
        self,
        account: AccountInfo,
        client: httpx.Client | None = None,
        *,
        limiter: Limiter | None = None,
        token_cache: Any | None = None,
        timeout: float = 20.0,
        policy: AddressPolicy | None = None,
    ) -> None:
        self.account = account
        # Where this adapter may connect: the account's base URL and the post's images are user input.
        self.policy = policy
        self.timeout = timeout
        # A client passed in belongs to the caller (it may serve other channels): close() leaves it open.
        self._owns_client = client is None
        self.client = client or make_client(self.base_url(account), timeout=timeout, policy=policy)
        self.limiter = limiter or LocalLimiter()
        self.token_cache = token_cache

    @classmethod
    def base_url(cls, account: AccountInfo) -> str:
        """The platform's API root for this account (sandboxes set ``config['base_url']``)."""
        return str(account.config.get("base_url", ""))

    # -- the one HTTP call ------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request: throttle, send, map transport failures, then map error replies (``_check``)."""
        try:
            self.limiter.acquire(f"{self.kind}:{self.account.id}", self.rate_per_second)
            if self.ip_limit:
                # Half the hour's calls as a burst, the other half spread over it: no span of the period gets
                # more than the platform allows (core.ratelimit), and a fan-out's first calls go at once.
                calls, period = self.ip_limit
                self.limiter.acquire(f"{self.kind}:ip", calls / 2 / period, burst=max(1, calls // 2))
        except Throttled:
            raise
        except RateLimited as exc:
            # Our own limiter said "wait longer than I let you sleep": nothing was sent, and it is no failed
            # attempt. Without retry_after its store failed (Redis, the database): an ordinary NotSent.
            if exc.retry_after is None:
                raise NotSent(f"{self.kind}: the rate limiter is unavailable") from exc
            raise Throttled(str(exc), retry_after=exc.retry_after) from exc
        except ChannelError:
            raise
        except Exception as exc:  # the shared limiter's store (Redis, the database) failed: nothing was sent
            raise NotSent(f"{self.kind}: the rate limiter is unavailable ({exc.__class__.__name__})") from exc
        try:
            with timed_platform_call(self.kind, url) as call:
                response = self.client.request(method, url, **kwargs)
                call["outcome"] = str(response.status_code)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never reached the platform: safe to retry.
            raise Unavailable(f"cannot reach {self.kind}: {exc.__class__.__name__}") from exc
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as exc:
            # The request may have been processed: the caller must look before trying again.
            raise OutcomeUnknown(f"no answer from {self.kind}: {exc.__class__.__name__}") from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"{self.kind} transport error: {exc}") from exc
        except OutboundRefused as exc:  # the account's address is not one we may reach: fix the config
            raise InvalidRequest(f"{self.kind}: {exc}", code="outbound_refused") from None
        self._check(response)
        return response

    def download_image(
        self,
        url: str,
        *,
        what: str,
        max_bytes: int,
        types: Iterable[str],
        client: httpx.Client | None = None,
        max_redirects: int = IMAGE_MAX_REDIRECTS,
    ) -> tuple[bytes, ImageType]:
        """Download one of a post's images (a cover, a body image): its bytes and what the bytes are.

        Through ``client`` (default: this adapter's, which is guarded unless a test injected it), so only a
        public address or the allow-list is reached, each redirect hop checked again; at most
        ``max_bytes``; refused unless the bytes are an image of one of ``types`` (``"jpeg"``, ``"png"``…) —
        platforms judge the bytes, and a URL that answers with anything else is not an image of the post.
        Errors name the URL without its query and never quote what the address answered.
        """
        data = image_bytes(client or self.client, url, what=what, max_bytes=max_bytes, max_redirects=max_redirects)
        allowed = frozenset(types)
        shown = f"{what} {safe_url(url)}" if url[:5].lower() != "data:" else what
        kind = sniff_image(data)
        if kind is None or kind.name not in allowed:
            names = "/".join(sorted(allowed))
            raise InvalidRequest(f"{shown} is {kind.name if kind else 'not an image'}; {self.kind} takes {names}")
        return data, kind

    def _check(self, response: httpx.Response) -> None:
        """Raise the :mod:`channels.errors` exception an error reply stands for (the module docstring's
        table); return for a reply that is not an error."""
        status = response.status_code
        if 300 <= status < 400:
            raise self._redirect_error(response)
        failed = status >= 400
        message = ""
        if self.ERROR_BODY_ON == "any" or self.ERROR_BODY_ON == ("error" if failed else "success"):
            code, message = self._error_fields(response, _json_or_none(response))
            if code is not None:
                raise self.error_for(code, message, response=response)
        if failed:
            raise self.status_error(response, message)

    def _error_fields(self, response: httpx.Response, body: Any) -> tuple[ErrorCode | None, str]:
        """The envelope's (code, message) of a reply whose parsed JSON is ``body`` (``None``: not JSON).

        Code ``None`` means the body reports no error. Hook: override where a platform's envelope is
        more than :attr:`ERROR_CODE_KEYS` and :attr:`ERROR_MESSAGE_KEYS`.
        """
        if not isinstance(body, Mapping):
            return None, ""
        message = next((str(body[k]) for k in self.ERROR_MESSAGE_KEYS if body.get(k)), "")
        key = next((k for k in self.ERROR_CODE_KEYS if k in body), None)
        code = as_error_code(body[key]) if key is not None else None
        return (None if code == 0 else code), message

    def _redirect_error(self, response: httpx.Response) -> ChannelError:
        """The error for a 3xx reply (hook: a platform whose redirect means more, e.g. to its login page)."""
        where = response.headers.get("location") or "elsewhere"
        return InvalidRequest(
            f"{self.kind} redirected to {where}: fix the address in the account's config", code=response.status_code
        )

    def error_for(self, code: ErrorCode, message: str = "", *, response: httpx.Response | None = None) -> ChannelError:
        """The exception for a platform error code, from :attr:`ERROR_MAP`.

        An unknown code is :class:`Unavailable` on an HTTP 5xx reply, else :class:`InvalidRequest` (never
        retried: a code nobody mapped is not known to be transient).
        """
        status = response.status_code if response is not None else 200
        cls = self.ERROR_MAP.get(code) or (Unavailable if status >= 500 else InvalidRequest)
        return self.make_error(cls, self._error_text(message, code=code, status=status), code=code, response=response)

    def status_error(self, response: httpx.Response, message: str = "") -> ChannelError:
        """The exception for an HTTP error status: :attr:`STATUS_MAP`, else :func:`http_status_class`."""
        status = response.status_code
        cls = self.STATUS_MAP.get(status) or http_status_class(status)
        return self.make_error(cls, self._error_text(message, code=None, status=status), code=status, response=response)

    def make_error(
        self,
        cls: type[ChannelError],
        message: str,
        *,
        code: ErrorCode | None,
        response: httpx.Response | None = None,
    ) -> ChannelError:
        """Build ``cls`` with what its kind carries: ``retry_after`` for transient errors, ``paused_until``
        for a spent quota."""
        if issubclass(cls, QuotaExhausted):
            return cls(message, code=code, paused_until=self.next_quota_reset())
        if issubclass(cls, TransientError):
            return cls(message, code=code, retry_after=self._retry_after(code, response))
        return cls(message, code=code)

    def _error_text(self, message: str, *, code: ErrorCode | None, status: int) -> str:
        what = f"error {code}" if code is not None else f"answered HTTP {status}"
        return f"{self.kind} {what}: {message}" if message else f"{self.kind} {what}"

    def _retry_after(self, code: ErrorCode | None, response: httpx.Response | None) -> float | None:
        """Seconds to wait before retrying: the reply's ``Retry-After`` (hook: a platform's own hints)."""
        return parse_retry_after(response.headers.get("retry-after")) if response is not None else None

    # -- the platform's clock ---------------------------------------------------------------------

    def platform_now(self) -> float:
        """The platform's current time (epoch seconds); ours unless an adapter knows better."""
        return time.time()

    def next_quota_reset(self) -> datetime:
        """When daily quotas reset: the next 00:00 in :attr:`quota_timezone` on the platform's clock (aware UTC)."""
        local = datetime.fromtimestamp(self.platform_now(), self.quota_timezone)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), self.quota_timezone)
        return midnight.astimezone(UTC)

    # -- operations -------------------------------------------------------------------------------

    def check_credentials(self) -> None:
        """Raise :class:`NeedsReauth` if the account's credential does not work."""
        raise NotImplementedError

    def render(self, content: PostContent, *, link: str | None = None) -> Rendered:
        """Render a post for this platform, within its limits. Pure."""
        raise NotImplementedError

    def publish(self, ctx: DeliveryContext) -> PublishResult:
        """Publish, resuming from ``ctx.progress`` where an earlier attempt stopped."""
        raise NotImplementedError

    def status(self, ctx: DeliveryContext) -> StatusResult:
        """The platform's view of an accepted delivery (asynchronous platforms)."""
        raise NotImplementedError

    def lookup(self, ctx: DeliveryContext) -> PublishResult | None:
        """Find a post we may have published, by our idempotency key; ``None`` if it is not there."""
        raise NotImplementedError

    def metrics(self, ctxs: Iterable[DeliveryContext]) -> dict[int, Metrics]:
        """Engagement numbers per delivery id for published deliveries."""
        raise NotImplementedError

    def retract(self, ctx: DeliveryContext) -> None:
        """Remove a published post from the platform (idempotent: gone already is success)."""
        raise NotImplementedError

    def comments(
        self, ctx: DeliveryContext, cursor: Mapping[str, Any] | None = None, *, limit: int = 500
    ) -> CommentBatch:
        """Readers' comments on one published delivery that came after ``cursor`` (``None``: from the first),
        at most ``limit`` of them, oldest first where the platform allows. Read-only: never calls ``ctx.save``.
        Adapters that can read comments set :attr:`supports_comments`."""
        raise NotImplementedError

    @classmethod
    def can_retract(cls, config: Mapping[str, Any]) -> bool:
        """Whether an account with this ``config`` is retracted through the API (as an instance's
        ``supports_retract`` says), known without its credentials; False: a person deletes the copy by hand."""
        return cls.supports_retract

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client this channel made; a client passed in is left to its owner."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()


# -------------------------------------------------------------------------------------- registry

REGISTRY: dict[str, type[Channel]] = {}


def register(cls: type[Channel]) -> type[Channel]:
    """Class decorator: register an adapter under its ``kind``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    if cls.kind in REGISTRY and REGISTRY[cls.kind] is not cls:
        raise ValueError(f"channel kind {cls.kind!r} registered twice")
    REGISTRY[cls.kind] = cls
    return cls


def get_channel_class(kind: str) -> type[Channel]:
    """The adapter class for a channel kind; ``KeyError`` names the known kinds."""
    _load_builtin()
    try:
        return REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown channel kind {kind!r}; known: {', '.join(sorted(REGISTRY))}") from None


def channel_kinds() -> list[str]:
    """Every registered channel kind."""
    _load_builtin()
    return sorted(REGISTRY)


@cache
def _load_builtin() -> None:
    # Explicit list, not folder scanning: importing a module registers its adapter. Imported on first
    # use, not at the top: the adapter modules import this one. Once (a failed import is tried again):
    # import_module on five loaded modules at every lookup was ~3 % of a delivery worker's time (py-spy).
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


BUILTIN_MODULES: list[str] = [
    "channels.website",
    "channels.wechat",
    "channels.weibo",
    "channels.toutiao",
    "channels.manual",
]
