"""Channel adapters for accounts: the adapter's view of an account, one factory wired to the shared token cache
and the shared rate limiter, and the credential check made before anyone stores credentials."""

from __future__ import annotations

import functools
from typing import Any

import redis

from channels import tokens
from channels.base import AccountInfo, Channel, get_channel_class
from channels.errors import ChannelError, NeedsReauth, PermanentError, RateLimited
from core import ratelimit
from core.crypto import decrypt_credentials, platform_token_cipher
from core.db import engine_for
from core.errors import InvalidInput
from core.settings import get_settings
from publisher.domain.models import Account


def account_info(account: Account) -> AccountInfo:
    """The adapter's view of an account: decrypted credentials and config with the sandbox URL filled in."""
    return _info(account.id, account.kind, account.name, decrypt_credentials(account.credentials_enc), account.config)


def _info(account_id: int, kind: str, name: str, credentials: Any, config: dict[str, Any]) -> AccountInfo:
    sandbox = get_settings().sandbox_url
    config = {k: (v.replace("{sandbox}", sandbox) if isinstance(v, str) else v) for k, v in config.items()}
    return AccountInfo(id=account_id, kind=kind, name=name, credentials=credentials, config=config)


def check_credentials(
    kind: str, name: str, credentials: dict[str, Any], config: dict[str, Any], account_id: int = 0
) -> None:
    """Ask the platform whether these credentials work, before anyone stores them.

    Raises :class:`InvalidInput` with the platform's reason when it refuses them, or when it cannot be asked
    now (unreachable, rate-limited), so a typo in a password is found when the account is added, not at the
    first post.
    """
    channel = make_channel(_info(account_id, kind, name, credentials, config))
    try:
        channel.check_credentials()
    except NeedsReauth as exc:
        raise InvalidInput(f"{kind} refused these credentials: {exc}") from exc
    except PermanentError as exc:
        raise InvalidInput(f"{kind} account not usable: {exc}") from exc
    except ChannelError as exc:
        raise InvalidInput(f"cannot check the credentials with {kind} now: {exc} (or skip the check)") from exc
    finally:
        channel.close()


def token_cache() -> Any:
    """The process-wide shared token cache: Redis in production, the database on the embedded default."""
    settings = get_settings()
    return _token_cache_for(settings.broker_url, settings.database_url)


@functools.lru_cache(maxsize=4)
def _token_cache_for(broker_url: str, database_url: str) -> Any:
    # One per configuration, like the limiter: a process that changes its settings does not keep using the
    # store of the previous one.
    # Tokens are stored encrypted: one is as good as the app's secret while it lives.
    if broker_url.startswith(("redis://", "rediss://")):
        return tokens.RedisTokenCache(redis.Redis.from_url(broker_url), cipher=_TokenCipher())
    return tokens.SqlTokenCache(engine_for(database_url), cipher=_TokenCipher())


class _TokenCipher:
    """The platform-token cipher of the current settings (:func:`core.crypto.platform_token_cipher`), looked up at
    each use: building an adapter needs no key, only storing or reading a token does, and a changed key counts
    at once (a cache is kept per configuration, across key changes)."""

    def encrypt(self, data: bytes) -> bytes:
        return platform_token_cipher().encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        return platform_token_cipher().decrypt(token)


def limiter() -> ratelimit.SharedLimiter:
    """The process-wide shared rate limiter: Redis in production, the database on the embedded default.

    Per-account paces (``Channel.rate_per_second``) then hold across deliveries, worker processes and
    machines, not just within one adapter instance. A call that would wait past the limiter's bound raises
    :class:`RateLimited`, so the delivery is retried later instead of blocking its worker.
    """
    settings = get_settings()
    return _limiter_for(settings.broker_url, settings.database_url)


@functools.lru_cache(maxsize=4)
def _limiter_for(broker_url: str, database_url: str) -> ratelimit.SharedLimiter:
    # One instance per configuration, so a process that changes its settings (tests, drills) does not keep
    # limiting through the store of the previous one.
    if broker_url.startswith(("redis://", "rediss://")):
        return ratelimit.RedisLimiter(redis.Redis.from_url(broker_url), error=RateLimited)
    return ratelimit.SqlLimiter(engine_for(database_url), error=RateLimited)


def make_channel(info: AccountInfo) -> Channel:
    """An adapter instance for one account, wired to the shared token cache and rate limiter; it owns its HTTP
    client, so ``close()`` (or leaving its ``with`` block) releases it."""
    cls = get_channel_class(info.kind)
    return cls(info, token_cache=token_cache(), limiter=limiter(), timeout=get_settings().http_timeout_s)
