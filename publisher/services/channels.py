"""Channel adapters for accounts: the adapter's view of an account, one factory wired to the shared token cache,
and the credential check made before anyone stores credentials."""

from __future__ import annotations

from typing import Any

import redis

from channels.base import (
    AccountInfo,
    Channel,
    get_channel_class,
)
from channels.errors import ChannelError, NeedsReauth, PermanentError
from core.crypto import decrypt_credentials
from core.db import get_engine
from core.errors import InvalidInput
from core.settings import get_settings
from publisher.domain.models import (
    Account,
)


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


_token_cache: Any = None


def token_cache() -> Any:
    """The process-wide shared token cache: Redis in production, the database on the embedded default."""
    global _token_cache
    if _token_cache is None:
        from channels import tokens

        settings = get_settings()
        if settings.broker_url.startswith(("redis://", "rediss://")):
            _token_cache = tokens.RedisTokenCache(redis.Redis.from_url(settings.broker_url))
        else:
            _token_cache = tokens.SqlTokenCache(get_engine())
    return _token_cache


def make_channel(info: AccountInfo) -> Channel:
    """An adapter instance for one account, wired to the shared token cache; it owns its HTTP client, so
    ``close()`` (or leaving its ``with`` block) releases it."""
    cls = get_channel_class(info.kind)
    return cls(info, token_cache=token_cache(), timeout=get_settings().http_timeout_s)
