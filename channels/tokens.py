"""One shared, single-flight cache of platform access tokens.

Why: a platform such as WeChat hands out one access token per app; every fetch of a new one may
invalidate the token other workers hold ("token stomping"), and fetches are rationed (stable_token's
``force_refresh``: 20 a day, 30 s apart). So every worker process must share one cached token per app and
only one of them may refresh it at a time; the others wait for that refresh and then read its result.

Protocol (:class:`TokenCache`)::

    token = cache.get("wechat:<appid>", fetch)                # cached token, or fetch one
    token = cache.get("wechat:<appid>", fetch, stale=token)   # the platform just rejected ``token``

``fetch(force) -> (token, expires_in_s)`` talks to the platform. ``force`` is True when the caller saw
the cached token rejected: ``fetch`` must then not hand back that same token. With ``stale`` given, a
cached token that differs from ``stale`` means somebody refreshed already, so it is returned without a
platform call; otherwise one caller takes the lock, fetches once, stores and releases, and the
concurrent callers wait on the lock (bounded by ``wait_s``) and then read what it stored.

Implementations share the algorithm (:class:`_LockingTokenCache`) and differ in where the token and the
lock live: :class:`MemoryTokenCache` (threads of one process), :class:`RedisTokenCache` (production:
redis-py's ``Lock``, an owner-token lock released by a Lua check-and-delete) and
:class:`SqlTokenCache` (the embedded default: a row lock by conditional UPDATE on ``channel_tokens``).

The stores outside the process take a ``cipher`` (:class:`Cipher`, e.g. a ``MultiFernet``): an access token
is as good as the app's secret for two hours, so it is kept encrypted in Redis and in the database. A stored
value the cipher cannot decrypt (a rotated key, a value from before encryption) is a cache miss, never an
error: the token is fetched again and overwritten.

Other per-app values that must be made once and shared by every worker ride on the same mechanism, under keys
of their own: WeChat's default cover (:meth:`channels.wechat.WeChatChannel.default_cover_media_id`) is a
permanent material uploaded once per app, its ``media_id`` kept here; ``stale`` then names a ``media_id`` the
platform refused. ``count_refresh=False`` keeps such fetches out of the token-refresh metric.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from channels.errors import ChannelError, NotSent, Unavailable
from core.errors import ConfigError
from core.metrics import TOKEN_REFRESHES

Fetch = Callable[[bool], tuple[str, float]]

# A token is treated as expired this many seconds before the platform says, so a request that starts
# just before expiry does not reach the platform with a dead token. WeChat's stable_token renews its
# token at least 300 s early, so 60 s stays well inside that window.
EXPIRY_MARGIN_S = 60.0


class Cipher(Protocol):
    """Encrypts the token values a cache stores (``cryptography``'s ``Fernet`` / ``MultiFernet`` fit).

    ``decrypt`` raises ``InvalidToken`` (or a ``ValueError``) for a value it cannot decrypt.
    """

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, token: bytes) -> bytes: ...


class TokenCache(Protocol):
    """A shared, single-flight token cache (see the module docstring)."""

    def get(self, key: str, fetch: Fetch, *, stale: str | None = None, count_refresh: bool = True) -> str: ...


@dataclass(frozen=True)
class CachedToken:
    """A token and when it stops being usable (epoch seconds)."""

    token: str
    expires_at: float


class _LockingTokenCache:
    """The single-flight algorithm; subclasses provide storage and a lock with an owner.

    ``lock_ttl_s`` bounds how long a crashed holder can block the others; ``wait_s`` bounds how long a
    caller waits for someone else's refresh before giving up with :class:`Unavailable` (transient:
    the delivery is retried later rather than hammering the platform). ``cipher`` encrypts the token value
    in the stores that keep it outside the process (:meth:`_seal` / :meth:`_open`).
    """

    def __init__(
        self,
        *,
        wait_s: float = 15.0,
        lock_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        cipher: Cipher | None = None,
    ):
        self.wait_s = wait_s
        self.lock_ttl_s = lock_ttl_s
        self.clock = clock
        self.cipher = cipher

    def _seal(self, token: str) -> str:
        """The token as stored: encrypted when there is a cipher (Fernet tokens are ASCII)."""
        return token if self.cipher is None else self.cipher.encrypt(token.encode()).decode("ascii")

    def _open(self, stored: str) -> str | None:
        """The token from its stored form; None (a cache miss) when it cannot be decrypted."""
        if self.cipher is None:
            return stored
        try:
            return self.cipher.decrypt(stored.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            # A key rotated away, a plain value from before encryption, garbage: the token is short-lived and
            # can be fetched again, so a cache must not fail a delivery over it. (A key refused outside the
            # embedded default is a ConfigError, and is not caught: that is the operator's to fix.)
            return None

    # -- storage and lock, per implementation ---------------------------------------------------

    def _read(self, key: str) -> CachedToken | None:
        raise NotImplementedError

    def _write(self, key: str, token: CachedToken) -> None:
        raise NotImplementedError

    def _acquire(self, key: str, timeout: float) -> Any | None:
        """Take the refresh lock of ``key`` within ``timeout`` seconds; a handle, or None."""
        raise NotImplementedError

    def _release(self, key: str, handle: Any) -> None:
        raise NotImplementedError

    # -- the algorithm ---------------------------------------------------------------------------

    def _usable(self, cached: CachedToken | None, stale: str | None) -> bool:
        return cached is not None and cached.token != stale and cached.expires_at - EXPIRY_MARGIN_S > self.clock()

    def get(self, key: str, fetch: Fetch, *, stale: str | None = None, count_refresh: bool = True) -> str:
        """The cached token for ``key``; refreshed once (across all callers) if missing, expired or stale.

        ``count_refresh``: count a fetch in ``matrix_token_refreshes_total`` (False for values that are no
        access token, such as WeChat's default cover ``media_id``).

        A failure of the store itself (Redis or the database down, a key of the wrong type) raises
        :class:`NotSent`: the caller's request has not left yet, so it is retried, never taken for a lost answer.
        """
        cached = self._store("read", self._read, key)
        if self._usable(cached, stale):
            return cached.token  # type: ignore[union-attr]
        handle = self._store("lock", self._acquire, key, self.wait_s)
        if handle is None:
            # Someone else held the lock the whole time: use their token if it arrived.
            cached = self._store("read", self._read, key)
            if self._usable(cached, stale):
                return cached.token  # type: ignore[union-attr]
            raise Unavailable(f"token refresh for {key} is taking too long elsewhere", retry_after=self.wait_s)
        try:
            # Re-read under the lock: the holder before us may have stored a fresh token while we waited.
            cached = self._store("read", self._read, key)
            if self._usable(cached, stale):
                return cached.token  # type: ignore[union-attr]
            token, expires_in = fetch(stale is not None)
            if count_refresh:  # under the key's channel ("wechat:<appid>"), not the app
                TOKEN_REFRESHES.labels(key.split(":", 1)[0]).inc()
            # A token fetched but not stored is merely fetched again: stable_token without force invalidates nothing.
            self._store("write", self._write, key, CachedToken(token, self.clock() + float(expires_in)))
            return token
        finally:
            try:
                self._release(key, handle)
            except Exception:  # noqa: S110 - a lock left behind lapses after lock_ttl_s; the token is what counts
                pass

    @staticmethod
    def _store(what: str, op: Callable[..., Any], *args: Any) -> Any:
        """Run one store operation; its failure (anything but a ConfigError: a refused secret key is the
        operator's to fix) is :class:`NotSent`, naming the operation and the error's class, never its text."""
        try:
            return op(*args)
        except (ConfigError, ChannelError):
            raise
        except Exception as exc:
            raise NotSent(f"the token cache failed ({what}: {exc.__class__.__name__}); nothing was sent") from exc


class MemoryTokenCache(_LockingTokenCache):
    """Tokens in a dict and one ``threading.Lock`` per key: single-flight across threads of one process."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tokens: dict[str, CachedToken] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _read(self, key: str) -> CachedToken | None:
        return self._tokens.get(key)

    def _write(self, key: str, token: CachedToken) -> None:
        self._tokens[key] = token

    def _acquire(self, key: str, timeout: float) -> Any | None:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        return lock if lock.acquire(timeout=timeout) else None

    def _release(self, key: str, handle: Any) -> None:
        handle.release()


class RedisTokenCache(_LockingTokenCache):
    """Tokens in Redis (``<prefix>token:<key>``, expiring with the token) and redis-py's ``Lock``.

    redis-py's lock is ``SET NX PX`` with a random owner token, released by a Lua script that deletes
    the key only if it still holds that token, so a holder whose lock timed out cannot free another's.
    """

    def __init__(self, redis: Any, *, prefix: str = "mm:", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redis = redis
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}token:{key}"

    def _read(self, key: str) -> CachedToken | None:
        raw = self.redis.get(self._key(key))
        if raw is None:
            return None
        data = json.loads(raw)
        token = self._open(data["token"])
        return None if token is None else CachedToken(token, float(data["expires_at"]))

    def _write(self, key: str, token: CachedToken) -> None:
        ttl_ms = max(1, int((token.expires_at - self.clock()) * 1000))
        value = {"token": self._seal(token.token), "expires_at": token.expires_at}
        self.redis.set(self._key(key), json.dumps(value), px=ttl_ms)

    def _acquire(self, key: str, timeout: float) -> Any | None:
        lock = self.redis.lock(f"{self.prefix}token-lock:{key}", timeout=self.lock_ttl_s, sleep=0.02)
        return lock if lock.acquire(blocking=True, blocking_timeout=timeout) else None

    def _release(self, key: str, handle: Any) -> None:
        from redis.exceptions import LockError

        try:
            handle.release()
        except LockError:
            # Our lock expired (a fetch slower than lock_ttl_s) and perhaps went to another caller:
            # it is no longer ours to release, and the Lua check refused to touch it. Nothing to undo.
            pass


TOKENS_METADATA = sa.MetaData()

channel_tokens = sa.Table(
    "channel_tokens",
    TOKENS_METADATA,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("token", sa.Text, nullable=True),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("lock_owner", sa.String(64), nullable=True),
    sa.Column("lock_until", sa.Float, nullable=True),
)
"""The embedded default's token table (the publisher's Alembic migration creates exactly these columns)."""


class SqlTokenCache(_LockingTokenCache):
    """Tokens in the ``channel_tokens`` table; the refresh lock is the row's ``lock_owner``/``lock_until``.

    The lock is taken by a conditional UPDATE (``… WHERE lock_until IS NULL OR lock_until < now``): the
    database serialises concurrent UPDATEs of one row, so exactly one caller sees ``rowcount == 1``.
    The row is created on first use; two first users racing on the INSERT are told apart by the primary
    key (one gets an IntegrityError and goes back to the UPDATE). ``lock_until`` lets a crashed holder's
    lock lapse. Waiters poll every ``poll_s`` (SQLite has no way to block on another's row lock).
    """

    def __init__(self, engine: Engine, *, poll_s: float = 0.05, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.poll_s = poll_s

    def create_table(self) -> None:
        """Create ``channel_tokens`` if missing (tests; the publisher's migration does it in production)."""
        TOKENS_METADATA.create_all(self.engine, tables=[channel_tokens])

    def _read(self, key: str) -> CachedToken | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(channel_tokens.c.token, channel_tokens.c.expires_at).where(channel_tokens.c.key == key)
            ).first()
        if row is None or row.token is None or row.expires_at is None:
            return None
        token = self._open(row.token)
        return None if token is None else CachedToken(token, float(row.expires_at))

    def _write(self, key: str, token: CachedToken) -> None:
        # Only called by the lock holder, whose row exists (it was created to take the lock).
        with self.engine.begin() as conn:
            conn.execute(
                channel_tokens.update()
                .where(channel_tokens.c.key == key)
                .values(token=self._seal(token.token), expires_at=token.expires_at)
            )

    def _try_lock(self, key: str, owner: str) -> bool:
        now = self.clock()
        with self.engine.begin() as conn:
            taken = conn.execute(
                channel_tokens.update()
                .where(
                    channel_tokens.c.key == key,
                    sa.or_(channel_tokens.c.lock_until.is_(None), channel_tokens.c.lock_until < now),
                )
                .values(lock_owner=owner, lock_until=now + self.lock_ttl_s)
            ).rowcount
            if taken == 1:
                return True
            exists = conn.execute(sa.select(channel_tokens.c.key).where(channel_tokens.c.key == key)).first()
        if exists is not None:
            return False  # the row is locked by somebody else
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    channel_tokens.insert().values(key=key, lock_owner=owner, lock_until=now + self.lock_ttl_s)
                )
            return True
        except IntegrityError:
            return False  # another first user inserted the row (and holds its lock) just now

    def _acquire(self, key: str, timeout: float) -> Any | None:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while True:
            if self._try_lock(key, owner):
                return owner
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_s)

    def _release(self, key: str, handle: Any) -> None:
        # Released only by its owner: if our lock lapsed and was taken over, this UPDATE matches nothing.
        with self.engine.begin() as conn:
            conn.execute(
                channel_tokens.update()
                .where(channel_tokens.c.key == key, channel_tokens.c.lock_owner == handle)
                .values(lock_owner=None, lock_until=None)
            )


_default: MemoryTokenCache | None = None
_default_guard = threading.Lock()


def default_token_cache() -> MemoryTokenCache:
    """The process-wide in-memory cache, used by adapters built without an injected cache (CLI, tests)."""
    global _default
    with _default_guard:
        if _default is None:
            _default = MemoryTokenCache()
        return _default
