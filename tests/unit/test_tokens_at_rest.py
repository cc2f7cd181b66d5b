"""Platform tokens are cached encrypted, in Redis and in the database; an undecryptable value is a cache miss."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from cryptography.fernet import Fernet

from channels.tokens import RedisTokenCache, SqlTokenCache, channel_tokens
from core.settings import reset_settings

REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN = "wx0demo1_" + "A" * 30


def _redis() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL}: {exc}")
    return client


class Store:
    """One backend: a cache factory and the raw stored value of a key, as an attacker with the store sees it."""

    def __init__(self, make: Callable[..., Any], raw: Callable[[str], str | None]) -> None:
        self.make, self.raw = make, raw


@pytest.fixture(params=["sql", "redis"])
def store(request, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sql":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'tokens.db'}")
        SqlTokenCache(engine).create_table()

        def raw_sql(key: str) -> str | None:
            with engine.connect() as conn:
                return conn.scalar(sa.select(channel_tokens.c.token).where(channel_tokens.c.key == key))

        yield Store(lambda **kw: SqlTokenCache(engine, **kw), raw_sql)
        engine.dispose()
    else:
        client = _redis()
        prefix = f"mmtest:rest:{uuid.uuid4().hex[:8]}:"

        def raw_redis(key: str) -> str | None:
            value = client.get(f"{prefix}token:{key}")
            return None if value is None else value.decode()

        yield Store(lambda **kw: RedisTokenCache(client, prefix=prefix, **kw), raw_redis)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def _fetcher(*tokens: str) -> tuple[Callable[[bool], tuple[str, float]], list[bool]]:
    calls: list[bool] = []

    def fetch(force: bool) -> tuple[str, float]:
        calls.append(force)
        return tokens[len(calls) - 1], 7200.0

    return fetch, calls


def test_the_stored_value_does_not_contain_the_token(store: Store) -> None:
    cache = store.make(cipher=Fernet(Fernet.generate_key()))
    fetch, calls = _fetcher(TOKEN)
    assert cache.get("wechat:wxdemo", fetch) == TOKEN
    assert cache.get("wechat:wxdemo", fetch) == TOKEN and calls == [False]  # read back through the cipher
    raw = store.raw("wechat:wxdemo")
    assert raw and TOKEN not in raw and "A" * 30 not in raw


def test_a_value_the_cipher_cannot_decrypt_is_a_miss_not_an_error(store: Store) -> None:
    # Written in plain text (before encryption) or with a key since rotated away: fetched again, overwritten.
    store.make().get("wechat:wxold", _fetcher("plain-old-token")[0])
    cache = store.make(cipher=Fernet(Fernet.generate_key()))
    fetch, calls = _fetcher(TOKEN)
    assert cache.get("wechat:wxold", fetch) == TOKEN and calls == [False]
    rotated = store.make(cipher=Fernet(Fernet.generate_key()))
    fetch2, calls2 = _fetcher(TOKEN + "2")
    assert rotated.get("wechat:wxold", fetch2) == TOKEN + "2" and calls2 == [False]


@pytest.mark.parametrize("backend", ["embedded", "redis"])
def test_the_service_caches_are_built_with_the_token_cipher(backend, tmp_path, monkeypatch) -> None:
    from core.crypto import platform_token_cipher
    from publisher.services import channels

    monkeypatch.setenv("MATRIX_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("MATRIX_DATABASE_URL", raising=False)
    monkeypatch.delenv("MATRIX_BROKER_URL", raising=False)
    monkeypatch.setenv("MATRIX_SECRET_KEY", "t" * 40)
    if backend == "redis":
        _redis()
        monkeypatch.setenv("MATRIX_BROKER_URL", REDIS_URL)
    reset_settings()
    try:
        cache = channels.token_cache()
        assert isinstance(cache, RedisTokenCache if backend == "redis" else SqlTokenCache)
        sealed = cache.cipher.encrypt(b"tok")
        assert platform_token_cipher().decrypt(sealed) == b"tok"
    finally:
        channels._token_cache_for.cache_clear()
        reset_settings()


def test_a_refused_secret_key_is_an_error_not_a_miss(store: Store) -> None:
    from core.errors import ConfigError

    class Refusing:
        def encrypt(self, data: bytes) -> bytes:
            raise ConfigError("MATRIX_SECRET_KEY is not set")

        decrypt = encrypt

    store.make().get("wechat:wxrefused", _fetcher("plain-old-token")[0])
    with pytest.raises(ConfigError):
        store.make(cipher=Refusing()).get("wechat:wxrefused", _fetcher(TOKEN)[0])
