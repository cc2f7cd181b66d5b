"""The channel contract: one small base class per platform adapter, a registry, one HTTP client factory.

An adapter turns a post into a platform's own protocol. The base class owns the HTTP call: it applies
throttling, sends the request, and maps transport failures to the exception tree in
:mod:`channels.errors`; subclasses build requests and parse replies (``_check`` maps a platform's error
bodies). Adapters never touch the database: what they need arrives in a :class:`DeliveryContext`, and every
remote id they obtain is handed to ``ctx.save_progress`` *before* the next call, so a crash between two
calls never loses an id (the caller persists it at once).
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx

from channels.errors import ChannelError, OutcomeUnknown, RateLimited, Unavailable

USER_AGENT = "media-matrix/0.1 (+https://github.com/media-matrix)"


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


# --------------------------------------------------------------------------------------- throttle


class Limiter(Protocol):
    """Shared rate limiting: raise :class:`RateLimited` (with ``retry_after``) instead of waiting long."""

    def acquire(self, key: str, per_second: float) -> None: ...


class LocalLimiter:
    """In-process spacing of calls per key; the publisher injects a cross-process limiter in workers."""

    def __init__(self, max_wait_s: float = 5.0) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._max_wait = max_wait_s

    def acquire(self, key: str, per_second: float) -> None:
        if per_second <= 0:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next.get(key, now))
            wait = at - now
            if wait > self._max_wait:
                raise RateLimited(f"local rate limit for {key}", retry_after=wait)
            self._next[key] = at + 1.0 / per_second
        if wait > 0:
            time.sleep(wait)


# ------------------------------------------------------------------------------------ http factory


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes ~35 ms; one context serves every client of the process.
    return ssl.create_default_context()


def make_client(base_url: str = "", *, timeout: float = 20.0, **kwargs: Any) -> httpx.Client:
    """The one place that makes HTTP clients: timeouts, User-Agent, no implicit redirects to elsewhere."""
    kwargs.setdefault("verify", _ssl_context())
    return httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        **kwargs,
    )


# ------------------------------------------------------------------------------------------ base


class Channel:
    """Base class of every platform adapter.

    Subclasses set the class attributes that describe the platform and implement the operations.
    ``render`` is pure. Every network call goes through :meth:`request`, which throttles and translates
    transport errors; subclasses override :meth:`_check` to turn a platform's error bodies into
    :mod:`channels.errors` exceptions.
    """

    kind: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    title_maxlen: ClassVar[int] = 100
    summary_maxlen: ClassVar[int] = 200
    body_maxlen: ClassVar[int] = 100_000
    rate_per_second: ClassVar[float] = 5.0  # our own spacing of calls per account
    posts_per_hour: ClassVar[int | None] = None  # the platform's per-account posting limit, enforced by us
    asynchronous: ClassVar[bool] = False  # publish returns awaiting_confirmation; status() settles it
    supports_retract: ClassVar[bool] = True
    supports_metrics: ClassVar[bool] = True
    needs_website_link: ClassVar[bool] = False  # a delivery waits for the post's website delivery URL

    def __init__(
        self,
        account: AccountInfo,
        client: httpx.Client | None = None,
        *,
        limiter: Limiter | None = None,
        token_cache: Any | None = None,
    ) -> None:
        self.account = account
        self.client = client or make_client(self.base_url(account))
        self.limiter = limiter or LocalLimiter()
        self.token_cache = token_cache

    @classmethod
    def base_url(cls, account: AccountInfo) -> str:
        """The platform's API root for this account (sandboxes set ``config['base_url']``)."""
        return str(account.config.get("base_url", ""))

    # -- the one HTTP call ------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request: throttle, send, map transport failures, then let ``_check`` map bodies."""
        self.limiter.acquire(f"{self.kind}:{self.account.id}", self.rate_per_second)
        try:
            response = self.client.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never reached the platform: safe to retry.
            raise Unavailable(f"cannot reach {self.kind}: {exc.__class__.__name__}") from exc
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as exc:
            # The request may have been processed: the caller must look before trying again.
            raise OutcomeUnknown(f"no answer from {self.kind}: {exc.__class__.__name__}") from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"{self.kind} transport error: {exc}") from exc
        self._check(response)
        return response

    def _check(self, response: httpx.Response) -> None:
        """Raise the matching :mod:`channels.errors` exception for an error reply. Override per platform."""
        if response.status_code >= 500:
            raise Unavailable(f"{self.kind} answered {response.status_code}", code=response.status_code)
        if response.status_code >= 400:
            raise ChannelError(f"{self.kind} answered {response.status_code}", code=response.status_code)

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

    def close(self) -> None:
        self.client.close()


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


def _load_builtin() -> None:
    # Explicit list, not folder scanning: importing a module registers its adapter.
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)


BUILTIN_MODULES: list[str] = ["channels.website", "channels.wechat", "channels.weibo", "channels.toutiao",
                              "channels.manual"]
